//! Bounds on what one call may ask for. Every list argument (filters, roles to list, the
//! permissions of a role) is de-duplicated and holds at most `MAX_VALUES` entries, so no call
//! can turn into thousands of SQL parameters or a quarter-megabyte log line.

use super::error::DomainError;

pub const MAX_VALUES: usize = 50;

/// `values` without repeats (the first of each kept, in order); refused past `MAX_VALUES`,
/// naming the argument.
pub fn distinct<T: PartialEq + Clone>(name: &str, values: &[T]) -> Result<Vec<T>, DomainError> {
    if values.len() > MAX_VALUES {
        return Err(DomainError::Invalid(format!(
            "at most {MAX_VALUES} values per list ({name})"
        )));
    }
    let mut out: Vec<T> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_deduplicated_and_bounded() {
        assert_eq!(distinct("x", &[1, 2, 1, 3, 2]).unwrap(), [1, 2, 3]);
        assert!(distinct("x", &[7; 50]).is_ok());
        let err = distinct("action", &[7; 51]).unwrap_err().to_string();
        assert_eq!(err, "at most 50 values per list (action)");
    }
}
