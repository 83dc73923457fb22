//! Query-string validation: Rocket.Chat validates query parameters against a schema that
//! allows no additional properties, so a route that takes none answers 400 to any.

use std::collections::HashSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;

/// Accepts only a request without query parameters. Take it after the auth extractors:
/// Rocket.Chat checks 401 and 403 before 400.
pub struct NoQueryParams;

impl<S: Send + Sync> FromRequestParts<S> for NoQueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.uri.query().map(distinct_params).unwrap_or(0) {
            0 => Ok(NoQueryParams),
            n => Err(ApiError::UnexpectedQueryParams(n)),
        }
    }
}

/// How many properties a query string makes once parsed as Rocket.Chat's server parses it:
/// repeated names are one property, and `a[x]=1&a[y]=2` is one property `a`.
fn distinct_params(query: &str) -> usize {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, _)| match key.find('[') {
            Some(i) if i > 0 => key[..i].to_owned(),
            _ => key.into_owned(),
        })
        .collect::<HashSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::distinct_params;

    #[test]
    fn counts_properties_like_rocketchat() {
        assert_eq!(distinct_params(""), 0);
        assert_eq!(distinct_params("&&"), 0);
        assert_eq!(distinct_params("count=5"), 1);
        assert_eq!(distinct_params("a"), 1);
        assert_eq!(distinct_params("a=1&a=2"), 1);
        assert_eq!(distinct_params("a=1&b=2"), 2);
        assert_eq!(distinct_params("a[x]=1&a[y]=2&b=3"), 2);
    }
}
