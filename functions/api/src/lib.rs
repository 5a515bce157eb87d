//! The `api` Lambda's wiring, shared by its binary and the emulator tests: the core's
//! Router over the AWS adapters.

use herald_aws::emf::Emf;
use herald_aws::Aws;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::Config;
use std::sync::Arc;

/// Configuration from the function's environment: the settings both runtimes read
/// (`herald_core::settings`) and `HERALD_ADMIN_TOKEN_SHA256`; a value that does not parse
/// is an error, not a default.
pub fn config_from_env() -> Result<Config, String> {
    let settings = herald_aws::settings::shared_settings_from_env()?;
    let admin_token_hash = match std::env::var("HERALD_ADMIN_TOKEN_SHA256") {
        Ok(hex) if !hex.is_empty() => Some(herald_core::secret::parse_hash(&hex).ok_or(
            "HERALD_ADMIN_TOKEN_SHA256 is not a SHA-256 in hex (64 hex digits)".to_string(),
        )?),
        _ => None,
    };
    Ok(Config {
        admin_token_hash,
        ..Config::default()
    }
    .with_settings(&settings))
}

/// The HTTP API over `aws`.
pub fn router(aws: &Aws, config: Config) -> axum::Router {
    herald_core::http::router(Arc::new(aws.app(
        config,
        Arc::new(LogDeliverer::default()),
        herald_delivery::CHANNELS,
    )))
}

/// `router`, writing the metrics of each request as EMF lines once it is answered.
pub fn with_metrics(router: axum::Router, emf: Emf) -> axum::Router {
    router.layer(axum::middleware::map_response(
        move |response: axum::response::Response| {
            emf.flush();
            async move { response }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (method, path) of every HTTP API event of the `api` function in `template.yaml`.
    fn template_routes() -> Vec<(String, String)> {
        let template = include_str!("../../../template.yaml");
        let api = &template[template.find("\n  ApiFunction:").expect("the api function")..];
        let api = &api[..api[1..]
            .find("\n  WorkerFunction:")
            .expect("the next function")];
        let mut routes = Vec::new();
        let mut method = None;
        for line in api.lines().map(str::trim) {
            if let Some(m) = line.strip_prefix("Method:") {
                method = Some(m.trim().to_string());
            } else if let (Some(p), Some(m)) = (line.strip_prefix("Path:"), method.take()) {
                routes.push((m, p.trim().to_string()));
            }
        }
        routes
    }

    /// What API Gateway sends to the function is what the Router serves: every route of
    /// the table, with each of its methods, has an event in `template.yaml`, and every
    /// event there leads to routes of the table.
    #[test]
    fn template_yaml_routes_every_route_of_the_router_and_no_other() {
        let template = template_routes();
        assert!(template.len() >= 5, "{template:?}");
        let covers = |(method, path): &(String, String), route: &str, wanted: &str| {
            let method_ok = method == "ANY" || method == wanted;
            let path_ok = match path.strip_suffix("{proxy+}") {
                Some(prefix) => route.starts_with(prefix),
                None => path == route,
            };
            method_ok && path_ok
        };
        let routes = herald_core::http::routes();
        for route in &routes {
            for method in route.methods {
                assert!(
                    template.iter().any(|t| covers(t, route.path, method)),
                    "{method} {} is not routed to the api function",
                    route.path
                );
            }
        }
        for event in &template {
            assert!(
                routes
                    .iter()
                    .any(|r| r.methods.iter().any(|m| covers(event, r.path, m))),
                "{event:?} leads to no route of the Router"
            );
        }
    }

    #[test]
    fn the_environment_sets_the_admin_token_hash_and_the_shared_settings_or_stops_start_up() {
        let hash = hex::encode(herald_core::secret::hash("the-admin-token"));
        std::env::set_var("HERALD_ADMIN_TOKEN_SHA256", &hash);
        std::env::set_var("HERALD_PUBLIC_URL", "https://herald.example.com");
        std::env::set_var("HERALD_MAX_USERS", "50");
        std::env::set_var("HERALD_DELIVER_BATCH", "25");
        let config = config_from_env().unwrap();
        assert_eq!(
            config.admin_token_hash,
            Some(herald_core::secret::hash("the-admin-token"))
        );
        assert_eq!(config.url("/x"), "https://herald.example.com/x");
        assert_eq!(config.limits.max_users, 50);
        assert_eq!(
            config.deliver_batch, 25,
            "herald serve's --deliver-batch too"
        );
        // A malformed value stops start-up, naming the variable; before, a malformed hash
        // left the admin API closed and a malformed limit was ignored, silently.
        std::env::set_var("HERALD_ADMIN_TOKEN_SHA256", "not-hex");
        let error = config_from_env().unwrap_err();
        assert!(error.contains("HERALD_ADMIN_TOKEN_SHA256"), "{error}");
        std::env::set_var("HERALD_ADMIN_TOKEN_SHA256", &hash);
        std::env::set_var("HERALD_MAX_USERS", "lots");
        assert_eq!(
            config_from_env().unwrap_err(),
            "HERALD_MAX_USERS=\"lots\": not a whole number"
        );
        std::env::remove_var("HERALD_MAX_USERS");
        // A setting only herald serve reads is refused, not ignored.
        std::env::set_var("HERALD_MAX_BACKLOG_JOBS", "10");
        let error = config_from_env().unwrap_err();
        assert!(
            error.starts_with("HERALD_MAX_BACKLOG_JOBS: set for herald serve"),
            "{error}"
        );
        std::env::remove_var("HERALD_MAX_BACKLOG_JOBS");
        assert!(config_from_env().is_ok());
    }
}
