//! What each call needs its token to allow ([`Need`]): a gRPC method in the
//! context its `AxonIQ-Context` names, or a REST route. Anything not listed
//! needs administrator rights, so a method or route added later is closed
//! until it is placed here.

use ranvier_wire::http::decode;

use super::Need;
use super::applications::AppRole;

/// The need of a call to the gRPC method at `path` in `context`.
pub fn grpc(path: &str, context: &str) -> Need {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let role = match (service, method) {
        ("io.axoniq.axonserver.grpc.event.EventStore", "AppendEvent" | "AppendSnapshot") => AppRole::PublishEvents,
        (
            "io.axoniq.axonserver.grpc.event.EventStore",
            "ListAggregateEvents"
            | "ListAggregateSnapshots"
            | "ListEvents"
            | "ReadHighestSequenceNr"
            | "QueryEvents"
            | "GetFirstToken"
            | "GetLastToken"
            | "GetTokenAt",
        ) => AppRole::ReadEvents,
        ("io.axoniq.axonserver.grpc.event.EventScheduler", _) => AppRole::PublishEvents,
        ("io.axoniq.axonserver.grpc.command.CommandService", "OpenStream") => AppRole::SubscribeCommandHandler,
        ("io.axoniq.axonserver.grpc.command.CommandService", "Dispatch") => AppRole::DispatchCommands,
        ("io.axoniq.axonserver.grpc.query.QueryService", "OpenStream") => AppRole::SubscribeQueryHandler,
        ("io.axoniq.axonserver.grpc.query.QueryService", "Query" | "Subscription") => AppRole::DispatchQuery,
        ("io.axoniq.axonserver.grpc.control.PlatformService", "GetPlatformServer" | "OpenStream") => {
            return Need::Client { context: context.to_owned(), role: None };
        }
        _ => return Need::Admin,
    };
    Need::Client { context: context.to_owned(), role: Some(role) }
}

/// The need of a REST call (`None`: open to anyone). `query` is the URI's
/// query string; `open_probes` whether `/ready` and `/metrics` are open.
pub fn rest(method: &str, path: &str, query: Option<&str>, open_probes: bool) -> Option<Need> {
    // Decoded as the handlers decode them, so that what is checked is what
    // is served; anything that does not decode, or names its context more
    // than once, needs administrator rights.
    let Some(decoded) = path.trim_matches('/').split('/').map(|s| decode(s, false)).collect::<Option<Vec<String>>>()
    else {
        return Some(Need::Admin);
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let mut contexts = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (decode(key, true), decode(value, true)) {
            (Some(key), Some(value)) if key == "context" => contexts.push(value),
            (Some(_), Some(_)) => {}
            _ => return Some(Need::Admin),
        }
    }
    if contexts.len() > 1 {
        return Some(Need::Admin);
    }
    let named = contexts.pop().filter(|c| !c.is_empty());
    let context_param = || named.clone();
    let read = matches!(method, "GET" | "HEAD");
    match (read, segments.as_slice()) {
        (_, ["health"] | ["actuator", "health"] | ["actuator", "health", "liveness"]) => None,
        (_, ["ready"] | ["actuator", "health", "readiness"] | ["metrics"] | ["actuator", "prometheus"])
            if open_probes =>
        {
            None
        }
        // The console's way in: its sign-in page, its style sheet and
        // script, and the redirect to it.
        (_, ["console", "login"] | ["console", "logout"] | ["console", "assets", ..] | [""]) => None,
        // The event browser shows what clients stored: reading it needs
        // the right to read the context's events.
        (true, ["console", "events"]) => Some(Need::Client {
            context: context_param().unwrap_or_else(|| "default".to_owned()),
            role: Some(AppRole::ReadEvents),
        }),
        // Deleting a context, and instructing its processors, as over REST.
        (false, ["console", "contexts", "delete"] | ["console", "processors"]) => {
            Some(Need::ContextAdmin { context: context_param().unwrap_or_else(|| "default".to_owned()) })
        }
        // Applications carry roles, backups every event: only
        // administrators see or change them.
        (_, ["v1", "public", "applications"] | ["v1", "applications", ..] | ["v1", "backup", ..]) => Some(Need::Admin),
        (true, _) => Some(Need::Monitor { context: context_param() }),
        (false, ["v1", "context", context]) if method == "DELETE" => {
            Some(Need::ContextAdmin { context: (*context).to_owned() })
        }
        (false, ["v1", "components", _, "processors", _, _]) if method == "PATCH" => {
            Some(Need::ContextAdmin { context: context_param().unwrap_or_else(|| "default".to_owned()) })
        }
        (false, _) => Some(Need::Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(context: &str, role: Option<AppRole>) -> Need {
        Need::Client { context: context.into(), role }
    }

    #[test]
    fn every_client_method_needs_its_role_in_its_context() {
        let table = [
            ("/io.axoniq.axonserver.grpc.event.EventStore/AppendEvent", Some(AppRole::PublishEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/AppendSnapshot", Some(AppRole::PublishEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/ListEvents", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/ListAggregateEvents", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/ListAggregateSnapshots", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/ReadHighestSequenceNr", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/QueryEvents", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/GetFirstToken", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/GetLastToken", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventStore/GetTokenAt", Some(AppRole::ReadEvents)),
            ("/io.axoniq.axonserver.grpc.event.EventScheduler/ScheduleEvent", Some(AppRole::PublishEvents)),
            ("/io.axoniq.axonserver.grpc.command.CommandService/OpenStream", Some(AppRole::SubscribeCommandHandler)),
            ("/io.axoniq.axonserver.grpc.command.CommandService/Dispatch", Some(AppRole::DispatchCommands)),
            ("/io.axoniq.axonserver.grpc.query.QueryService/OpenStream", Some(AppRole::SubscribeQueryHandler)),
            ("/io.axoniq.axonserver.grpc.query.QueryService/Query", Some(AppRole::DispatchQuery)),
            ("/io.axoniq.axonserver.grpc.query.QueryService/Subscription", Some(AppRole::DispatchQuery)),
            ("/io.axoniq.axonserver.grpc.control.PlatformService/OpenStream", None),
            ("/io.axoniq.axonserver.grpc.control.PlatformService/GetPlatformServer", None),
        ];
        for (path, role) in table {
            assert_eq!(grpc(path, "orders"), client("orders", role), "{path}");
        }
        assert_eq!(grpc("/io.axoniq.axonserver.grpc.event.EventStore/Transform", "orders"), Need::Admin);
        assert_eq!(grpc("/some.Other/Method", "orders"), Need::Admin, "unknown methods are closed");
    }

    #[test]
    fn what_is_checked_is_what_the_handler_decodes() {
        let events = |context: &str| Some(Need::Client { context: context.into(), role: Some(AppRole::ReadEvents) });
        assert_eq!(rest("GET", "/console/events", Some("%63ontext=prod"), false), events("prod"));
        assert_eq!(rest("GET", "/console/events", Some("context=pr%6Fd"), false), events("prod"));
        assert_eq!(
            rest("DELETE", "/v1/context/pr%6Fd", None, true),
            Some(Need::ContextAdmin { context: "prod".into() }),
            "a path segment is decoded as axum's Path decodes it"
        );
        assert_eq!(
            rest("GET", "/console/events", Some("context=default&context=prod"), false),
            Some(Need::Admin),
            "a context named twice needs administrator rights"
        );
        assert_eq!(rest("GET", "/console/events", Some("context=%zz"), false), Some(Need::Admin));
        assert_eq!(rest("GET", "/v1/public/%zz", None, false), Some(Need::Admin));
    }

    #[test]
    fn rest_routes_need_reading_context_admin_or_admin() {
        assert_eq!(rest("GET", "/health", None, false), None);
        assert_eq!(rest("GET", "/metrics", None, true), None);
        assert_eq!(rest("GET", "/metrics", None, false), Some(Need::Monitor { context: None }));
        assert_eq!(
            rest("GET", "/v1/components", Some("context=orders"), true),
            Some(Need::Monitor { context: Some("orders".into()) })
        );
        assert_eq!(rest("GET", "/v1/public/context", None, true), Some(Need::Monitor { context: None }));
        assert_eq!(rest("GET", "/v1/public/applications", None, true), Some(Need::Admin));
        assert_eq!(rest("GET", "/console/login", None, false), None, "signing in needs no token");
        assert_eq!(rest("GET", "/console", None, false), Some(Need::Monitor { context: None }));
        assert_eq!(
            rest("GET", "/console/events", Some("context=orders"), false),
            Some(Need::Client { context: "orders".into(), role: Some(AppRole::ReadEvents) }),
            "browsing events is reading them"
        );
        assert_eq!(rest("POST", "/console/groups/members", None, false), Some(Need::Admin));
        assert_eq!(
            rest("POST", "/console/processors", Some("context=orders"), false),
            Some(Need::ContextAdmin { context: "orders".into() }),
            "as the REST API's processor actions"
        );
        assert_eq!(
            rest("POST", "/console/contexts/delete", Some("context=orders"), false),
            Some(Need::ContextAdmin { context: "orders".into() })
        );
        assert_eq!(rest("PATCH", "/v1/applications/app", None, true), Some(Need::Admin));
        assert_eq!(
            rest("DELETE", "/v1/context/orders", None, true),
            Some(Need::ContextAdmin { context: "orders".into() })
        );
        assert_eq!(
            rest("PATCH", "/v1/components/c/processors/p/pause", Some("context=orders"), true),
            Some(Need::ContextAdmin { context: "orders".into() })
        );
        assert_eq!(rest("POST", "/v1/context", None, true), Some(Need::Admin));
        assert_eq!(rest("POST", "/v1/context/init", None, true), Some(Need::Admin));
        assert_eq!(rest("DELETE", "/v1/replicationgroups/g/n", None, true), Some(Need::Admin));
        assert_eq!(rest("PATCH", "/v1/replicationgroups/g", None, true), Some(Need::Admin));
        assert_eq!(rest("PUT", "/anything", None, true), Some(Need::Admin));
        assert_eq!(rest("GET", "/v1/backup/eventstore", Some("targetContext=default"), true), Some(Need::Admin));
        assert_eq!(rest("GET", "/v1/backup/file", Some("path=/x"), true), Some(Need::Admin));
    }
}
