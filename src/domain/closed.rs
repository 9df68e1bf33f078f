//! `closed_enum!`: a closed set of values with one text form each, for sets the tools
//! validate and list (actions, statuses, sources, permissions). Each value is declared on one
//! line; its text, `ALL`, parsing and serde form all come from that line.

/// Declares an enum whose variants each have a fixed text: serde uses the text, `ALL` lists the
/// variants in declaration order, `as_str` and `parse` convert.
macro_rules! closed_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        pub enum $name { $($(#[$vm])* #[serde(rename = $text)] $var),+ }

        impl $name {
            /// How many values the set has.
            pub const COUNT: usize = [$($text),+].len();

            /// Every value, in declaration order.
            pub const ALL: [$name; $name::COUNT] = [$($name::$var),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$var => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use closed_enum;
