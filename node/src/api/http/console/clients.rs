//! The console's clients page (`/console/clients?context=C`): the
//! applications connected to this node in a context, the components with
//! command and query handlers cluster-wide (`/v1/components`' listing),
//! and the event processors the clients report, cluster-wide, with their
//! segments and the pause / start / split / merge actions, relayed to the
//! clients that run them as the REST API relays them (names the clients
//! reported travel in the form's fields, never in its path)
//! (`messaging::processors`); the answer names the clients that
//! acknowledged, or the client's refusal with its error code.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use ranvier_wire::admin::{ProcessorInstance, ProcessorInstructed};

use super::{Frame, Viewer, after_action, cross_site, list_or_dash, render, same_origin};
use crate::access::Need;
use crate::api::http::HttpState;
use crate::api::http::admin::Refused;
use crate::api::http::processors::{apply, code_of};

pages!(ClientsPage);

/// The routes of this module.
pub(super) fn routes() -> Router<Arc<HttpState>> {
    Router::new().route("/console/clients", get(page)).route("/console/processors", post(instruct))
}

#[derive(serde::Deserialize)]
struct ContextQuery {
    context: Option<String>,
}

impl ContextQuery {
    fn context(&self) -> String {
        self.context.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "default".to_owned())
    }
}

/// A component with handlers.
struct ComponentRow {
    name: String,
    commands: String,
    queries: String,
    clients: String,
}

/// One event processor (one component's, one token store's) with its
/// instances.
struct ProcessorView {
    component: String,
    processor: String,
    token_store: String,
    /// An HTML id for the processor's box.
    id: String,
    instances: Vec<InstanceRow>,
}

/// One client's instance of a processor.
struct InstanceRow {
    node: String,
    client: String,
    mode: String,
    state: String,
    threads: String,
    segments: String,
}

#[derive(Template)]
#[template(path = "console/clients.html")]
struct ClientsPage {
    frame: Frame,
    contexts: Vec<String>,
    context: String,
    connected: Vec<(String, String)>,
    components: Vec<ComponentRow>,
    processors: Vec<ProcessorView>,
    /// Where the processor actions post (the context in the query, where
    /// the access check reads it; names in the form's fields).
    instruct_url: String,
    actions: [&'static str; 4],
    barred: Option<String>,
}

fn instance_row(instance: &ProcessorInstance) -> InstanceRow {
    let state = match (instance.running, instance.error) {
        (_, true) => "in error",
        (true, false) => "running",
        (false, false) => "paused",
    };
    let segments = if !instance.streaming {
        "— (subscribing)".to_owned()
    } else if instance.segments.is_empty() {
        "none claimed".to_owned()
    } else {
        let described: Vec<String> = instance
            .segments
            .iter()
            .map(|s| {
                let mut text = format!("{} (1/{}) at {}", s.segment_id, s.one_part_of, s.token_position);
                if s.replaying {
                    text.push_str(", replaying");
                } else if s.caught_up {
                    text.push_str(", caught up");
                }
                if !s.error_state.is_empty() {
                    text.push_str(&format!(", error: {}", s.error_state));
                }
                text
            })
            .collect();
        described.join("; ")
    };
    InstanceRow {
        node: instance.node.clone(),
        client: instance.client_id.clone(),
        mode: instance.mode.clone(),
        state: state.to_owned(),
        threads: format!("{} active, {} free", instance.active_threads, instance.available_threads),
        segments,
    }
}

/// The instances grouped by processor (component, name, token store).
fn processor_views(instances: &[ProcessorInstance]) -> Vec<ProcessorView> {
    let mut grouped: BTreeMap<(String, String, String), Vec<InstanceRow>> = BTreeMap::new();
    for instance in instances {
        let key = (instance.component.clone(), instance.processor.clone(), instance.token_store_identifier.clone());
        grouped.entry(key).or_default().push(instance_row(instance));
    }
    grouped
        .into_iter()
        .enumerate()
        .map(|(index, ((component, processor, token_store), instances))| ProcessorView {
            id: format!("processor-{index}"),
            component,
            processor,
            token_store,
            instances,
        })
        .collect()
}

async fn page(State(state): State<Arc<HttpState>>, headers: HeaderMap, Query(query): Query<ContextQuery>) -> Response {
    let context = query.context();
    let viewer = Viewer::of(&state, &headers).await;
    let frame =
        Frame::new(&state, &headers, &viewer, &super::status(&state), "clients", format!("Clients of {context}"));
    let contexts = super::context_names(&state);
    let components = state
        .messaging
        .as_ref()
        .map(|(commands, queries)| crate::messaging::components(commands, queries, &context))
        .unwrap_or_default()
        .into_iter()
        .map(|listing| ComponentRow {
            commands: list_or_dash(
                &listing.commands.iter().map(|(name, load)| format!("{name} (load {load})")).collect::<Vec<_>>(),
            ),
            queries: list_or_dash(&listing.queries),
            clients: listing
                .clients
                .iter()
                .map(|(node, clients)| {
                    if clients.is_empty() { format!("on {node}") } else { format!("{} on {node}", clients.join(", ")) }
                })
                .collect::<Vec<_>>()
                .join("; "),
            name: listing.component,
        })
        .collect();
    let processors = processor_views(&state.processors.listing(&context).await);
    let page = ClientsPage {
        frame,
        connected: state.processors.clients(&context),
        components,
        processors,
        instruct_url: format!("/console/processors?context={}", ranvier_wire::http::encode(&context)),
        actions: ["pause", "start", "split", "merge"],
        barred: viewer.barred(&state, &Need::ContextAdmin { context: context.clone() }).await,
        contexts,
        context,
    };
    render(&page)
}

#[derive(serde::Deserialize)]
struct InstructForm {
    component: String,
    processor: String,
    token_store: Option<String>,
    action: String,
}

/// What the page says of an instruction every client acknowledged.
fn instructed(action: &str, processor: &str, done: &ProcessorInstructed) -> String {
    let clients: Vec<String> = done
        .instructed
        .iter()
        .map(|c| match c.segment {
            Some(segment) => format!("{} {} on {} (segment {segment})", c.instruction, c.client_id, c.node),
            None => format!("{} {} on {}", c.instruction, c.client_id, c.node),
        })
        .collect();
    format!("{action} of {processor} acknowledged: {}", clients.join(", "))
}

/// Relays a processor action to the clients that run it.
async fn instruct(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<ContextQuery>,
    Form(form): Form<InstructForm>,
) -> Response {
    let context = query.context();
    let back = format!("/console/clients?context={}", ranvier_wire::http::encode(&context));
    if !same_origin(&headers) {
        return cross_site(&back);
    }
    let InstructForm { component, processor, token_store, action } = form;
    let token_store = token_store.as_deref().filter(|t| !t.is_empty());
    let outcome = match apply(&state, &context, &component, &processor, token_store, &action).await {
        Ok(done) => Ok(instructed(&action, &processor, &done)),
        Err(error) => Err(Refused { code: code_of(&error), message: error.to_string() }),
    };
    after_action(&back, outcome)
}

#[cfg(test)]
mod tests {
    use ranvier_wire::admin::SegmentListing;

    use super::*;

    #[test]
    fn a_name_a_client_reports_cannot_steer_a_form_or_write_markup() {
        let evil = "../../contexts/delete?context=prod&x=\"><script>alert(1)</script>";
        let instance = ProcessorInstance {
            node: "n1".into(),
            client_id: evil.into(),
            component: evil.into(),
            processor: evil.into(),
            token_store_identifier: evil.into(),
            streaming: true,
            ..Default::default()
        };
        let frame = Frame {
            title: "Clients of default".into(),
            section: "clients",
            node: "n1".into(),
            asset_version: super::super::ASSET_VERSION,
            refresh_seconds: 5,
            generated_at: String::new(),
            warnings: Vec::new(),
            flash: None,
            signed_in: None,
        };
        let page = ClientsPage {
            frame,
            contexts: vec!["default".into()],
            context: "default".into(),
            connected: vec![(evil.into(), evil.into())],
            components: Vec::new(),
            processors: processor_views(&[instance]),
            instruct_url: "/console/processors?context=default".into(),
            actions: ["pause", "start", "split", "merge"],
            barred: None,
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"), "markup is escaped");
        let actions: Vec<&str> = html.split("action=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
        assert_eq!(
            actions,
            ["/console/clients", "/console/processors?context=default"],
            "every form goes where the page says, whatever the names"
        );
    }

    #[test]
    fn instances_are_grouped_by_processor_and_their_segments_described() {
        let instance = |client: &str, processor: &str, segments: Vec<SegmentListing>| ProcessorInstance {
            node: "n1".into(),
            client_id: client.into(),
            component: "shop".into(),
            processor: processor.into(),
            token_store_identifier: "store".into(),
            mode: "Pooled Streaming".into(),
            running: true,
            streaming: true,
            segments,
            ..Default::default()
        };
        let half = |id, caught_up| SegmentListing {
            segment_id: id,
            one_part_of: 2,
            caught_up,
            token_position: 41,
            ..Default::default()
        };
        let views = processor_views(&[
            instance("a", "orders", vec![half(0, true)]),
            instance("b", "orders", vec![half(1, false)]),
            instance("a", "billing", vec![]),
        ]);
        let names: Vec<(&str, usize)> = views.iter().map(|v| (v.processor.as_str(), v.instances.len())).collect();
        assert_eq!(names, [("billing", 1), ("orders", 2)]);
        assert_eq!(views[0].instances[0].segments, "none claimed");
        assert_eq!(views[1].instances[0].segments, "0 (1/2) at 41, caught up");
        assert_eq!(views[1].instances[1].segments, "1 (1/2) at 41");
        assert_eq!(views[1].instances[1].state, "running");
    }
}
