//! The web console on the HTTP port: server-rendered pages (templates in
//! `node/templates/console`, compiled into the binary by askama), one
//! hand-written style sheet and one small script embedded in the binary
//! and served under paths that name the build, so browsers may cache them
//! for good. Nothing is fetched from elsewhere: the console works
//! air-gapped, and every page works without its script (it then reloads
//! itself instead of updating in place).
//!
//! Pages: the overview (`overview`), contexts and replication groups with
//! their actions (`manage`), the event browser (`events`), the clients,
//! handlers and event processors of a context (`clients`) and the sign-in
//! page. Every page reads the same state as the admin API, and every
//! action runs the same admin action as the REST API (`admin::*_action`),
//! so the console can do nothing `ranvierctl` cannot, and is refused what
//! `ranvierctl` would be refused, with the same AXONIQ code and message.
//!
//! This module owns what the pages share:
//! - the frame of every page ([`Frame`]): navigation, who is signed in,
//!   the one-shot message an action leaves for the next page ([`Flash`]),
//!   and the warnings a node cut off from its leader gives;
//! - signing in: with access control on, the token is kept in an
//!   HTTP-only, same-site cookie scoped to `/console` and read only on
//!   console paths (the access
//!   check takes it like the token header), and a page an action may not
//!   be done from says why beside the disabled control ([`Viewer`]);
//! - the guard every action passes first: a form posted from another site
//!   is refused ([`same_origin`]), since with access control off a form is
//!   the one request another site's page could make a browser send here;
//!   and no page may be framed by another site (`frame-ancestors 'none'`).

/// Makes each template listed a [`Page`] (each has its `frame` field).
macro_rules! pages {
    ($($page:ty),+ $(,)?) => {
        $(impl super::Page for $page {
            fn frame(&self) -> &super::Frame {
                &self.frame
            }
        })+
    };
}

mod clients;
mod events;
mod manage;
mod overview;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ranvier_wire::admin::GroupStatus;

use super::HttpState;
use super::admin::{Outcome, Refused};
use crate::access::{Holder, Need, Refusal};

/// The style sheet, as built into the binary.
const STYLE: &str = include_str!("console.css");

/// The script that keeps pages current, as built into the binary.
const SCRIPT: &str = include_str!("console.js");

/// Names the build in asset paths: a new binary's assets have new paths,
/// so old ones may be cached forever.
const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often a page updates itself.
const REFRESH_SECONDS: u32 = 5;

/// The cookie that carries a signed-in token.
const TOKEN_COOKIE: &str = "ranvier-console-token";

/// The cookie that carries an action's outcome to the next page.
const FLASH_COOKIE: &str = "ranvier-console-flash";

/// The longest message a flash carries (bytes; longer ones are cut).
const FLASH_MAX_BYTES: usize = 1024;

/// The console's routes.
pub(super) fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(overview::page))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route(&format!("/console/assets/{ASSET_VERSION}/console.css"), get(style))
        .route(&format!("/console/assets/{ASSET_VERSION}/console.js"), get(script))
        .merge(manage::routes())
        .merge(events::routes())
        .merge(clients::routes())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], body)
        .into_response()
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The token a console request carries in its sign-in cookie.
pub(super) fn token_cookie(headers: &HeaderMap) -> Option<&[u8]> {
    cookie(headers, TOKEN_COOKIE).map(str::as_bytes).filter(|t| !t.is_empty())
}

/// Whether `path` is one of the console's.
pub(super) fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// The token of a request: its token header, or on console paths the
/// sign-in cookie.
pub(super) fn presented<'a>(path: &str, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    crate::access::Access::presented(headers).or_else(|| if is_console(path) { token_cookie(headers) } else { None })
}

/// The answer to a console request the access check refused: a page goes
/// to the sign-in page, saying why; an action too, as its form cannot be
/// shown again without the page's token. The redirect carries the code in
/// `AxonIQ-ErrorCode`, as the REST API's refusals do.
pub(super) fn refused(refusal: Refusal) -> Response {
    let message = match refusal {
        Refusal::Missing => "Sign in with a token to use the console.".to_owned(),
        Refusal::NotAllowed => "The token you signed in with does not allow that page or action.".to_owned(),
    };
    let code = refusal.code().as_str();
    let mut response = with_flash(Redirect::to("/console/login").into_response(), &Flash::refused(code, message));
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert(ranvier_wire::codes::ERROR_CODE_HEADER, value);
    }
    response
}

/// Whether a posted form comes from this node's own pages: a browser names
/// where a form comes from (`Sec-Fetch-Site`, `Origin`); a request that
/// names neither comes from a program, which could as well call the REST
/// API, and is let through.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        }
        (Some(_), None) => false,
    }
}

/// What an action left for the next page to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Flash {
    /// The AXONIQ code of a refusal (`None`: the action was done).
    code: Option<String>,
    /// What the server said.
    message: String,
}

impl Flash {
    fn done(message: impl Into<String>) -> Self {
        Flash { code: None, message: message.into() }
    }

    fn refused(code: &str, message: impl Into<String>) -> Self {
        Flash { code: Some(code.to_owned()), message: message.into() }
    }

    fn of(outcome: Outcome) -> Self {
        match outcome {
            Ok(done) => Flash::done(done),
            Err(Refused { code, message }) => Flash::refused(&code, message),
        }
    }

    /// As a cookie value: `code|message` (an empty code when done), in hex
    /// so that any message fits a cookie.
    fn encode(&self) -> String {
        let mut message = self.message.as_str();
        if message.len() > FLASH_MAX_BYTES {
            let mut end = FLASH_MAX_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message = &message[..end];
        }
        ranvier_wire::hex(format!("{}|{message}", self.code.as_deref().unwrap_or("")).as_bytes())
    }

    fn decode(text: &str) -> Option<Self> {
        let bytes = unhex(text)?;
        let text = String::from_utf8(bytes).ok()?;
        let (code, message) = text.split_once('|')?;
        let code = (!code.is_empty()).then(|| code.to_owned());
        Some(Flash { code, message: message.to_owned() })
    }

    /// Whether the action was refused (for templates).
    fn is_refusal(&self) -> bool {
        self.code.is_some()
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Sets console cookie `name` to `value` on `response` (HTTP-only,
/// same-site, for `/console` only); an empty `value` clears it.
fn set_cookie(response: &mut Response, name: &str, value: &str) {
    let expiry = if value.is_empty() { "; Max-Age=0" } else { "" };
    let cookie = format!("{name}={value}; Path=/console{expiry}; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `response` with `flash` set for the next page.
fn with_flash(mut response: Response, flash: &Flash) -> Response {
    set_cookie(&mut response, FLASH_COOKIE, &flash.encode());
    response
}

/// After an action: back to `back` (a console path), saying how it went.
fn after_action(back: &str, outcome: Outcome) -> Response {
    with_flash(Redirect::to(back).into_response(), &Flash::of(outcome))
}

/// The refusal of a form posted from another site.
fn cross_site(back: &str) -> Response {
    let flash = Flash::refused(
        "AXONIQ-1001",
        "That form was sent from another site's page; the console only acts on forms sent from its own pages.",
    );
    with_flash(Redirect::to(back).into_response(), &flash)
}

/// Who is looking at a page, and what their token allows.
pub(super) struct Viewer {
    token: Option<Vec<u8>>,
    holder: Holder,
}

impl Viewer {
    async fn of(state: &HttpState, headers: &HeaderMap) -> Viewer {
        let token = presented("/console", headers).map(<[u8]>::to_vec);
        let holder = state.access.holder(token.as_deref()).await;
        Viewer { token, holder }
    }

    /// Why this viewer may not do what needs `need` (`None`: it may).
    async fn barred(&self, state: &HttpState, need: &Need) -> Option<String> {
        state.access.check(self.token.as_deref(), need).await.err()?;
        let what = match need {
            Need::Admin => "administrator rights (the ADMIN role)".to_owned(),
            Need::ContextAdmin { context } => format!("the CONTEXT_ADMIN role in {context}"),
            Need::Monitor { context: Some(context) } => format!("the MONITOR role in {context}"),
            Need::Monitor { context: None } => "the MONITOR role".to_owned(),
            Need::Client { context, role: Some(role) } => format!("the {} role in {context}", role.name()),
            Need::Client { context, role: None } => format!("a client role in {context}"),
        };
        Some(format!("Needs {what}; you are signed in with {}.", self.holder))
    }
}

/// What every page shows around its content.
pub(super) struct Frame {
    /// The page's title.
    title: String,
    /// Which navigation entry is this page's.
    section: &'static str,
    /// This node's name.
    node: String,
    asset_version: &'static str,
    refresh_seconds: u32,
    /// When the page was made (an HTTP date).
    generated_at: String,
    /// Groups whose replica here has no current leader, and the like.
    warnings: Vec<String>,
    /// What the last action came to.
    flash: Option<Flash>,
    /// Whose token the page is shown to (`None`: access control is off).
    signed_in: Option<String>,
}

impl Frame {
    /// The frame of a page in `section`, warning of `groups` (this node's
    /// [`status`], which a page that shows groups reads once for both).
    fn new(
        state: &HttpState,
        headers: &HeaderMap,
        viewer: &Viewer,
        groups: &[GroupStatus],
        section: &'static str,
        title: String,
    ) -> Frame {
        let mut warnings = leader_warnings(groups, leader_silence_limit_ms(state));
        if let Some(cluster) = &state.cluster
            && !cluster.model().initialized()
        {
            warnings.push("This node has not joined a cluster yet.".to_owned());
        }
        Frame {
            title,
            section,
            node: state.node.name.clone(),
            asset_version: ASSET_VERSION,
            refresh_seconds: REFRESH_SECONDS,
            generated_at: httpdate::fmt_http_date(std::time::SystemTime::now()),
            warnings,
            flash: cookie(headers, FLASH_COOKIE).and_then(Flash::decode),
            signed_in: (!matches!(viewer.holder, Holder::Anyone | Holder::Nobody)).then(|| viewer.holder.to_string()),
        }
    }
}

/// Every replication group as this node sees it (none when standalone).
fn status(state: &HttpState) -> Vec<GroupStatus> {
    state.cluster.as_ref().map(|c| c.status()).unwrap_or_default()
}

/// `items` joined with commas, or a dash when there are none.
fn list_or_dash(items: &[impl AsRef<str>]) -> String {
    if items.is_empty() { "—".to_owned() } else { items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ") }
}

/// How long a group's replica here may go without word from its leader
/// before the console calls the leader stale (ms).
fn leader_silence_limit_ms(state: &HttpState) -> u64 {
    state.cluster.as_ref().map_or(u64::MAX, |c| u64::try_from(c.leader_silence_limit().as_millis()).unwrap_or(u64::MAX))
}

/// Whether `group`'s replica here has a leader it heard from lately.
fn leader_current(group: &GroupStatus, limit_ms: u64) -> bool {
    group.leader.is_some() && group.leader_silent_ms.is_none_or(|ms| ms <= limit_ms)
}

/// What the top of a page says about groups whose replica here has no
/// current leader.
fn leader_warnings(groups: &[GroupStatus], limit_ms: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    for group in groups.iter().filter(|g| g.hosted && !leader_current(g, limit_ms)) {
        warnings.push(match (&group.leader, group.leader_silent_ms) {
            (Some(leader), Some(ms)) => format!(
                "This node has not heard from {leader}, the last leader it knew of replication group {}, for {ms} ms: it is cut off from its majority, or no leader is elected. Writes through this node wait or fail until it hears from one.",
                group.name
            ),
            _ => format!(
                "This node knows no leader for replication group {}: its contexts take no writes through this node until one is elected.",
                group.name
            ),
        });
    }
    warnings
}

/// A member's place in its group's Raft, as the pages say it.
fn raft_label(place: Option<ranvier_wire::admin::RaftMembership>) -> &'static str {
    use ranvier_wire::admin::RaftMembership;
    match place {
        Some(RaftMembership::Voter) => "voter",
        Some(RaftMembership::Learner) => "learner",
        Some(RaftMembership::None) => "not in the group's Raft yet",
        None => "—",
    }
}

/// The contexts a user may pick: the cluster's (without `_admin`), or a
/// standalone node's own; sorted.
fn context_names(state: &HttpState) -> Vec<String> {
    let mut names: Vec<String> = match &state.cluster {
        Some(cluster) => {
            cluster.model().contexts.keys().filter(|c| c.as_str() != crate::cluster::model::ADMIN).cloned().collect()
        }
        None => state.contexts.list().into_iter().map(|(name, _)| name).collect(),
    };
    names.sort();
    names
}

/// What `value` says, or a dash where it is not known here.
fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

/// A page: a template around a [`Frame`].
trait Page: Template {
    fn frame(&self) -> &Frame;
}

/// The page as HTML (its flash now shown, so cleared), or a plain 500
/// naming the template error.
fn render(page: &impl Page) -> Response {
    match page.render() {
        Ok(html) => {
            // No other site may frame a page (its forms would post as ours).
            let headers = [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ];
            let mut response = (headers, Html(html)).into_response();
            if page.frame().flash.is_some() {
                set_cookie(&mut response, FLASH_COOKIE, "");
            }
            response
        }
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("the page could not be rendered: {error}")).into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    frame: Frame,
    access_on: bool,
    /// What the signed-in token may do: (what, allowed), for the cluster
    /// and then each context.
    allowances: Vec<(String, bool)>,
}

/// What `viewer`'s token may do, cluster-wide and in each context.
async fn allowances(state: &HttpState, viewer: &Viewer) -> Vec<(String, bool)> {
    let contexts = context_names(state);
    let mut asked =
        vec![("Change the cluster: create contexts, add, move and remove members (ADMIN)".to_owned(), Need::Admin)];
    for context in contexts {
        asked.push((
            format!("See {context}'s state, clients and processors (MONITOR)"),
            Need::Monitor { context: Some(context.clone()) },
        ));
        asked.push((
            format!("Browse {context}'s events (READ_EVENTS)"),
            Need::Client { context: context.clone(), role: Some(crate::access::applications::AppRole::ReadEvents) },
        ));
        asked.push((
            format!("Delete {context}, pause, start, split and merge its processors (CONTEXT_ADMIN)"),
            Need::ContextAdmin { context },
        ));
    }
    let mut out = Vec::with_capacity(asked.len());
    for (what, need) in asked {
        let allowed = viewer.barred(state, &need).await.is_none();
        out.push((what, allowed));
    }
    out
}

impl Page for LoginPage {
    fn frame(&self) -> &Frame {
        &self.frame
    }
}

async fn login_page(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let viewer = Viewer::of(&state, &headers).await;
    let frame = Frame::new(&state, &headers, &viewer, &status(&state), "login", "Sign in".to_owned());
    let allowances = if frame.signed_in.is_some() { allowances(&state, &viewer).await } else { Vec::new() };
    render(&LoginPage { frame, access_on: state.access.enabled(), allowances })
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// Signs in: a token the node knows is kept in the sign-in cookie; one it
/// does not is refused here, not on the next page.
async fn login(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site("/console/login");
    }
    let token = form.token.trim();
    let usable = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        && !matches!(state.access.holder(Some(token.as_bytes())).await, Holder::Unknown | Holder::Nobody);
    if !usable {
        let flash = Flash::refused("AXONIQ-1001", "This cluster does not know that token.");
        return with_flash(Redirect::to("/console/login").into_response(), &flash);
    }
    let mut response = with_flash(Redirect::to("/console").into_response(), &Flash::done("Signed in."));
    set_cookie(&mut response, TOKEN_COOKIE, token);
    response
}

async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return cross_site("/console/login");
    }
    let mut response = with_flash(Redirect::to("/console/login").into_response(), &Flash::done("Signed out."));
    set_cookie(&mut response, TOKEN_COOKIE, "");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flash_survives_its_cookie_whatever_the_message_holds() {
        for flash in [
            Flash::done("Context orders created"),
            Flash::refused("AXONIQ-2309", "every member of _admin is a PRIMARY; \"quoted\", ünïcödé = ok"),
            Flash::done(""),
        ] {
            let encoded = flash.encode();
            assert!(encoded.bytes().all(|b| b.is_ascii_hexdigit()), "a cookie value: {encoded}");
            assert_eq!(Flash::decode(&encoded), Some(flash));
        }
        assert_eq!(Flash::decode("zz"), None, "not hex");
        assert_eq!(Flash::decode("616"), None, "odd length");
        let long = Flash::done("é".repeat(FLASH_MAX_BYTES));
        let cut = Flash::decode(&long.encode()).unwrap();
        assert!(cut.message.len() <= FLASH_MAX_BYTES && cut.message.chars().all(|c| c == 'é'), "cut on a char");
    }

    #[test]
    fn forms_from_other_sites_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(same_origin(&headers(&[("host", "n1:8024")])), "a program's request");
        assert!(same_origin(&headers(&[("host", "n1:8024"), ("origin", "http://n1:8024")])));
        assert!(same_origin(&headers(&[("host", "n1:8024"), ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("host", "n1:8024"), ("origin", "http://evil.example")])));
        assert!(!same_origin(&headers(&[("host", "n1:8024"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("host", "n1:8024"), ("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("host", "n1:8024"), ("sec-fetch-site", "same-site")])));
    }

    #[test]
    fn the_sign_in_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; ranvier-console-token=tok-123; b=2"));
        assert_eq!(token_cookie(&headers), Some(&b"tok-123"[..]));
        assert_eq!(presented("/console/contexts", &headers), Some(&b"tok-123"[..]));
        assert_eq!(presented("/v1/context", &headers), None, "the REST API takes no cookie");
        headers.insert("axoniq-access-token", HeaderValue::from_static("header"));
        assert_eq!(presented("/v1/context", &headers), Some(&b"header"[..]));
    }
}
