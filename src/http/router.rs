//! The hand-written router: a few byte comparisons on the path, no allocation.
//!
//! A general-purpose router (regex or radix tree) is more than nine routes need. The
//! order of checks puts the redirect last only because its pattern (`/{code}`) is the
//! catch-all; every check before it is a cheap fixed-prefix comparison.
//!
//! [`Route`] is also the metrics label: a route *template*, never the concrete path.

/// The routes the public listener knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /{code}`: the redirect.
    Redirect,
    /// `POST /api/v1/links`.
    Links,
    /// `GET|DELETE /api/v1/links/{code}`.
    Link,
    /// `GET /api/v1/links/{code}/stats`.
    LinkStats,
    /// `GET /healthz`: liveness.
    Healthz,
    /// `GET /readyz`: readiness.
    Readyz,
    /// `GET|POST /api/v1/keys`.
    Keys,
    /// `DELETE /api/v1/keys/{id}`.
    Key,
    /// `GET /api/v1/openapi.json`.
    OpenApi,
    /// Anything else.
    Unmatched,
}

const LINKS_PREFIX: &str = "/api/v1/links";
const KEYS_PREFIX: &str = "/api/v1/keys";
const OPENAPI: &str = "/api/v1/openapi.json";

impl Route {
    /// Every route, in [`Route::index`] order.
    pub const ALL: [Route; 10] = [
        Route::Redirect,
        Route::Links,
        Route::Link,
        Route::LinkStats,
        Route::Healthz,
        Route::Readyz,
        Route::Keys,
        Route::Key,
        Route::OpenApi,
        Route::Unmatched,
    ];

    /// Classifies `path`; returns the route and, for `{code}` routes, the code segment.
    #[inline]
    pub fn classify(path: &str) -> (Route, &str) {
        let Some(rest) = path.strip_prefix('/') else {
            return (Route::Unmatched, "");
        };
        match rest {
            "healthz" => return (Route::Healthz, ""),
            "readyz" => return (Route::Readyz, ""),
            _ => {}
        }
        if let Some(tail) = path.strip_prefix(LINKS_PREFIX) {
            return match tail.strip_prefix('/') {
                None if tail.is_empty() => (Route::Links, ""),
                Some(code) if !code.is_empty() && !code.contains('/') => (Route::Link, code),
                Some(rest) => match rest.strip_suffix("/stats") {
                    Some(code) if !code.is_empty() && !code.contains('/') => {
                        (Route::LinkStats, code)
                    }
                    _ => (Route::Unmatched, ""),
                },
                _ => (Route::Unmatched, ""),
            };
        }
        if let Some(tail) = path.strip_prefix(KEYS_PREFIX) {
            return match tail.strip_prefix('/') {
                None if tail.is_empty() => (Route::Keys, ""),
                Some(id) if !id.is_empty() && !id.contains('/') => (Route::Key, id),
                _ => (Route::Unmatched, ""),
            };
        }
        if path == OPENAPI {
            return (Route::OpenApi, "");
        }
        if !rest.is_empty() && !rest.contains('/') {
            return (Route::Redirect, rest);
        }
        (Route::Unmatched, "")
    }

    /// The template used as the `route` metrics label.
    pub fn template(self) -> &'static str {
        match self {
            Route::Redirect => "/{code}",
            Route::Links => "/api/v1/links",
            Route::Link => "/api/v1/links/{code}",
            Route::LinkStats => "/api/v1/links/{code}/stats",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Keys => "/api/v1/keys",
            Route::Key => "/api/v1/keys/{id}",
            Route::OpenApi => "/api/v1/openapi.json",
            Route::Unmatched => "unmatched",
        }
    }

    /// Dense index into per-route tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes_and_codes() {
        let cases = [
            ("/abc1234", Route::Redirect, "abc1234"),
            ("/api", Route::Redirect, "api"),
            ("/favicon.ico", Route::Redirect, "favicon.ico"),
            ("/healthz", Route::Healthz, ""),
            ("/readyz", Route::Readyz, ""),
            ("/api/v1/links", Route::Links, ""),
            ("/api/v1/links/abc", Route::Link, "abc"),
            ("/api/v1/links/", Route::Unmatched, ""),
            ("/api/v1/links/a/b", Route::Unmatched, ""),
            ("/api/v1/links/abc/stats", Route::LinkStats, "abc"),
            ("/api/v1/links//stats", Route::Unmatched, ""),
            ("/api/v1/links/a/b/stats", Route::Unmatched, ""),
            ("/api/v1/linksx", Route::Unmatched, ""),
            ("/api/v1/keys", Route::Keys, ""),
            ("/api/v1/keys/abc", Route::Key, "abc"),
            ("/api/v1/keys/", Route::Unmatched, ""),
            ("/api/v1/keys/a/b", Route::Unmatched, ""),
            ("/api/v1/keysx", Route::Unmatched, ""),
            ("/api/v1/openapi.json", Route::OpenApi, ""),
            ("/api/v1/openapi.jsonx", Route::Unmatched, ""),
            ("/", Route::Unmatched, ""),
            ("/a/b", Route::Unmatched, ""),
            ("*", Route::Unmatched, ""),
        ];
        for (path, route, code) in cases {
            assert_eq!(Route::classify(path), (route, code), "{path}");
        }
    }

    #[test]
    fn indexes_match_the_all_table() {
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(route.index(), i);
        }
    }
}
