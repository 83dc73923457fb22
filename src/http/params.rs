//! Query-string validation: Rocket.Chat validates query parameters against a schema that
//! allows no additional properties, so a route that takes none answers 400 to any.

use std::collections::{HashMap, HashSet};

use super::error::ApiError;

/// A route's query string, checked after authentication and permission (Rocket.Chat checks
/// 401 and 403 before 400).
pub trait FromQuery: Sized + Send {
    fn from_query(query: Option<&str>) -> Result<Self, ApiError>;
}

/// The query string is not read.
impl FromQuery for () {
    fn from_query(_: Option<&str>) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Accepts only a request without query parameters.
pub struct NoQuery;

impl FromQuery for NoQuery {
    fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        check_params(query, &[]).map(|_| NoQuery)
    }
}

/// The optional `updatedSince` parameter of `permissions.listAll`, as epoch ms; no other
/// parameter is accepted. Read as JavaScript's `Date.parse` reads it
/// (docs/compatibility.md#4-4-permissions); an empty value is no value, as in Rocket.Chat.
pub struct UpdatedSince(pub Option<i64>);

impl FromQuery for UpdatedSince {
    fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let params = check_params(query, &["updatedSince"])?;
        match params.get("updatedSince").map(String::as_str) {
            None | Some("") => Ok(UpdatedSince(None)),
            Some(text) => crate::domain::time::parse_js_date(text)
                .map(|ms| UpdatedSince(Some(ms)))
                .ok_or_else(|| {
                    ApiError::meteor(
                        "error-roomId-param-invalid",
                        "The \"updatedSince\" query parameter must be a valid date.",
                    )
                }),
        }
    }
}

/// The query's parameters (last value wins), or a 400 naming one line per parameter that is
/// not `allowed`.
fn check_params(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Some(query) = query else {
        return Ok(HashMap::new());
    };
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let extra = distinct_params(query, allowed);
    if extra > 0 {
        return Err(ApiError::UnexpectedQueryParams(extra));
    }
    Ok(params)
}

/// How many properties outside `allowed` a query string makes once parsed as Rocket.Chat's
/// server parses it: repeated names are one property, and `a[x]=1&a[y]=2` is one property `a`.
fn distinct_params(query: &str, allowed: &[&str]) -> usize {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, _)| match key.find('[') {
            Some(i) if i > 0 => key[..i].to_owned(),
            _ => key.into_owned(),
        })
        .filter(|key| !allowed.contains(&key.as_str()))
        .collect::<HashSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::distinct_params;

    #[test]
    fn counts_properties_like_rocketchat() {
        assert_eq!(distinct_params("", &[]), 0);
        assert_eq!(distinct_params("&&", &[]), 0);
        assert_eq!(distinct_params("count=5", &[]), 1);
        assert_eq!(distinct_params("a", &[]), 1);
        assert_eq!(distinct_params("a=1&a=2", &[]), 1);
        assert_eq!(distinct_params("a=1&b=2", &[]), 2);
        assert_eq!(distinct_params("a[x]=1&a[y]=2&b=3", &[]), 2);
        assert_eq!(distinct_params("updatedSince=x&b=3", &["updatedSince"]), 1);
    }
}
