//! A small builder for statements whose WHERE clause depends on the caller's filters.
//! Values are always bound, never spliced: filter text cannot change the statement.

pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

#[derive(Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a `$N` placeholder bound to `value`.
    pub fn arg(&mut self, value: Arg) -> &mut Self {
        self.args.push(value);
        let n = self.args.len();
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        self.arg(Arg::Int(v))
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        self.arg(Arg::Text(v.to_owned()))
    }

    /// Appends `($a, $b, …)` for an IN list; `items` must not be empty.
    pub fn text_list<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.push("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.text(item.as_ref());
        }
        self.push(")")
    }
}

/// Binds every argument of a `Sql` to a sqlx query, in order.
macro_rules! bind_args {
    ($query:expr, $sql:expr) => {{
        let mut q = $query;
        for a in &$sql.args {
            q = match a {
                $crate::store::sql::Arg::Int(i) => q.bind(*i),
                $crate::store::sql::Arg::Text(s) => q.bind(s.as_str()),
            };
        }
        q
    }};
}
pub(crate) use bind_args;
