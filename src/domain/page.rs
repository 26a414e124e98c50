use super::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s {
            None | Some("desc") => Ok(Order::Desc),
            Some("asc") => Ok(Order::Asc),
            Some(other) => Err(Error::invalid(
                format!(
                    "Invalid value for 'order': '{other}'. Supported values are: 'asc' and 'desc'."
                ),
                "order",
            )),
        }
    }
}

/// Parses `limit` within `1..=max`, with `default` when absent.
pub fn parse_limit(s: Option<&str>, default: u32, max: u32) -> Result<u32> {
    let Some(s) = s else { return Ok(default) };
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=i64::from(max)).contains(&n) => Ok(n as u32),
        _ => Err(Error::invalid(
            format!("Invalid value for 'limit': '{s}'. It must be an integer between 1 and {max}."),
            "limit",
        )),
    }
}

/// One page of a listing, fetched with `limit + 1` rows to learn `has_more`.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Page {
            items: rows,
            has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 10000, 10000).ok(), Some(10000));
        assert_eq!(parse_limit(Some("5"), 10, 100).ok(), Some(5));
        assert!(parse_limit(Some("0"), 10, 100).is_err());
        assert!(parse_limit(Some("101"), 10, 100).is_err());
        assert!(parse_limit(Some("ten"), 10, 100).is_err());
        assert!(Order::parse(Some("sideways")).is_err());
        assert_eq!(Order::parse(None).ok(), Some(Order::Desc));
    }

    #[test]
    fn overfetch() {
        let p = Page::from_overfetch(vec![1, 2, 3], 2);
        assert!(p.has_more);
        assert_eq!(p.items, vec![1, 2]);
        let p = Page::from_overfetch(vec![1, 2], 2);
        assert!(!p.has_more);
    }
}
