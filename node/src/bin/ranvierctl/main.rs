//! `ranvierctl`: the admin command line of a Ranvier cluster, with the
//! commands and options of Axon Server's CLI (PROTOCOL.md §4.4), over the
//! admin REST API of any node (`-S`, default `http://localhost:8024`).
//!
//! The token (`-t`) defaults to the system token a node on this machine
//! wrote (`--token-file`, default `security/.token`), when that file exists.
//!
//! HTTPS: an `https://` server, or `-s` (`--https`); the node's certificate
//! is checked against `--ca-file` (else the system's CA bundle) and must
//! name the host; `-i` (`--insecure-ssl`) skips the check.
//!
//! Exit codes: 0 done; 1 the server refused (its error code and message
//! are printed); 2 bad usage; 3 the server could not be reached.

mod backup;
mod http;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use http::{Unreachable, send, server};

use ranvier_wire::admin::{
    ApplicationJson, ApplicationRoles, ClusterNode, ContextListing, ContextRequest, GroupRequest, GroupSettings,
    GroupStatus, JoinRequest, MemberRole, RoleRequest,
};
use ranvier_wire::http::encode;
use serde_json::Value;

const USAGE: &str = "usage: ranvierctl <command> [options]
  common: -S <url> -t <token> (default: the token in --token-file, default security/.token) -o txt|json
          -s (https) --ca-file <pem> (the CAs to trust; default the system's) -i (insecure: no certificate check)

commands:
  init-cluster [-c <context>]
  register-node -h <internal-host> [-p <internal-port>] [-c <context> | --no-contexts]
  cluster
  register-replication-group -g <group> -n <primaries> [-a <active>] [-p <passive>] [-m <messaging>] [-sec <secondary>]
  add-node-to-replication-group -g <group> -n <node> [-r <role>]
  change-role -g <group> -n <node> -r <role>
  delete-node-from-replication-group -g <group> -n <node> [--preserve-event-store]
  delete-replication-group -g <group> [--preserve-event-store]
  set-min-active-backups -g <group> -n <count | default>
  replication-groups
  register-context -c <context> [-g <group>] [-n <primaries>] [-a ..] [-p ..] [-m ..] [-sec ..]
  delete-context -c <context> [--preserve-event-store]
  contexts
  register-application -a <name> -r <role@context,...> [-d <description>] [-T <token>]
  renew-application-token -a <name>
  delete-application -a <name>
  applications
  backup --target <dir> [-c <context>,...] [--incremental] [--keep <n>] [--summary <file>]
         (-S may list several nodes, comma-separated: the first ready one is backed up)
  backup verify <dir>/backup-<ms>
  backup prune <dir> --keep <n>
  restore --from <dir>[/backup-<ms>] --data-dir <event storage dir> [--log-dir <replication log dir>]

node roles: PRIMARY, ACTIVE_BACKUP, PASSIVE_BACKUP, SECONDARY, MESSAGING_ONLY; lists are comma separated
application roles: READ_EVENTS, PUBLISH_EVENTS, DISPATCH_COMMANDS, SUBSCRIBE_COMMAND_HANDLER, DISPATCH_QUERY,
  SUBSCRIBE_QUERY_HANDLER, USE_CONTEXT, MONITOR, CONTEXT_ADMIN, ADMIN; role@context, or role alone for every context";

/// A command-line mistake.
struct Usage(String);

/// Options after the command: `-x value` pairs and `--flags`.
struct Options {
    values: BTreeMap<String, String>,
    flags: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Usage> {
        let mut values = BTreeMap::new();
        let mut flags = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--preserve-event-store" | "--no-contexts" | "--incremental" => flags.push(arg.clone()),
                "-s" | "--https" => flags.push("-s".into()),
                "-i" | "--insecure-ssl" => flags.push("-i".into()),
                name if name.starts_with('-') => {
                    let value = args.next().ok_or_else(|| Usage(format!("{name} needs a value")))?;
                    values.insert(canonical(name).to_owned(), value.clone());
                }
                other => return Err(Usage(format!("unexpected argument {other:?}"))),
            }
        }
        Ok(Self { values, flags })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn required(&self, name: &str, what: &str) -> Result<&str, Usage> {
        self.get(name).ok_or_else(|| Usage(format!("{name} <{what}> is required")))
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// Long option names to the short ones Axon's CLI documents.
fn canonical(name: &str) -> &str {
    match name {
        "--server" => "-S",
        "--access-token" => "-t",
        "--output" => "-o",
        "--context" => "-c",
        "--replication-group" => "-g",
        "--node" | "--nodes" => "-n",
        "--role" | "--roles" => "-r",
        "--description" => "-d",
        "--token" => "-T",
        "--internal-host" => "-h",
        "--internal-port" | "--passive-backup" => "-p",
        "--active-backup" | "--application" => "-a",
        "--messaging-only" => "-m",
        "--secondary" => "-sec",
        other => other,
    }
}

/// A request for the server.
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

fn call(method: &'static str, path: String, body: Option<Value>) -> Call {
    Call { method, path, body }
}

/// A call with a JSON body of the admin API's wire shapes.
fn call_with(method: &'static str, path: String, body: &impl serde::Serialize) -> Result<Call, Usage> {
    let body = serde_json::to_value(body).map_err(|e| Usage(format!("cannot encode the request: {e}")))?;
    Ok(call(method, path, Some(body)))
}

/// `[{node, role}]` from the role list options.
fn roles(options: &Options) -> Vec<RoleRequest> {
    let mut out = Vec::new();
    for (option, role) in [
        ("-n", "PRIMARY"),
        ("-a", "ACTIVE_BACKUP"),
        ("-p", "PASSIVE_BACKUP"),
        ("-sec", "SECONDARY"),
        ("-m", "MESSAGING_ONLY"),
    ] {
        for node in options.list(option) {
            out.push(RoleRequest { node, role: Some(role.to_owned()) });
        }
    }
    out
}

/// `role@context` items grouped by context (a role alone is for every
/// context, `*`).
fn application_roles(items: &[String]) -> Vec<ApplicationRoles> {
    let mut by_context: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in items {
        let (role, context) = item.split_once('@').unwrap_or((item, "*"));
        by_context.entry(context.to_owned()).or_default().push(role.to_owned());
    }
    by_context.into_iter().map(|(context, roles)| ApplicationRoles { context, roles }).collect()
}

fn preserve(options: &Options) -> &'static str {
    if options.flag("--preserve-event-store") { "?preserveEventStore=true" } else { "" }
}

/// What a command asks of the server.
fn plan(command: &str, options: &Options) -> Result<Call, Usage> {
    let role_query =
        |role: Option<&str>| role.map(|r| format!("?role={}", encode(&r.to_ascii_uppercase()))).unwrap_or_default();
    Ok(match command {
        "init-cluster" => {
            let query = options.get("-c").map(|c| format!("?context={}", encode(c))).unwrap_or_default();
            call("POST", format!("/v1/context/init{query}"), None)
        }
        "register-node" => {
            let host = options.required("-h", "internal-host")?;
            let port: u16 = options
                .get("-p")
                .unwrap_or("8224")
                .parse()
                .map_err(|_| Usage("-p <internal-port> must be a port number".into()))?;
            let body = JoinRequest {
                internal_host_name: Some(host.to_owned()),
                internal_grpc_port: Some(port),
                context: options.get("-c").map(str::to_owned),
                no_contexts: options.flag("--no-contexts"),
            };
            call_with("POST", "/v1/cluster".into(), &body)?
        }
        "cluster" => call("GET", "/v1/public".into(), None),
        "register-replication-group" => {
            let group = options.required("-g", "replication-group")?;
            options.required("-n", "primary nodes")?;
            let body = GroupRequest { name: Some(group.to_owned()), roles: roles(options) };
            call_with("POST", "/v1/replicationgroups".into(), &body)?
        }
        "add-node-to-replication-group" | "change-role" => {
            let group = options.required("-g", "replication-group")?;
            let node = options.required("-n", "node")?;
            let role = if command == "change-role" { Some(options.required("-r", "role")?) } else { options.get("-r") };
            call("POST", format!("/v1/replicationgroups/{}/{}{}", encode(group), encode(node), role_query(role)), None)
        }
        "delete-node-from-replication-group" => {
            let group = options.required("-g", "replication-group")?;
            let node = options.required("-n", "node")?;
            call(
                "DELETE",
                format!("/v1/replicationgroups/{}/{}{}", encode(group), encode(node), preserve(options)),
                None,
            )
        }
        "delete-replication-group" => {
            let group = options.required("-g", "replication-group")?;
            call("DELETE", format!("/v1/replicationgroups/{}{}", encode(group), preserve(options)), None)
        }
        "set-min-active-backups" => {
            let group = options.required("-g", "replication-group")?;
            let count = options.required("-n", "count")?;
            let min_active_backups = match count {
                "default" => None,
                count => Some(count.parse::<u32>().map_err(|_| {
                    Usage(format!("-n {count}: expected a count of active backups (0 or more) or \"default\""))
                })?),
            };
            call_with(
                "PATCH",
                format!("/v1/replicationgroups/{}", encode(group)),
                &GroupSettings { min_active_backups },
            )?
        }
        "replication-groups" => call("GET", "/v1/public/replicationgroups".into(), None),
        "register-context" => {
            let context = options.required("-c", "context")?;
            let body = ContextRequest {
                context: Some(context.to_owned()),
                replication_group: options.get("-g").map(str::to_owned),
                roles: roles(options),
                nodes: options.list("-n"),
            };
            call_with("POST", "/v1/context".into(), &body)?
        }
        "delete-context" => {
            let context = options.required("-c", "context")?;
            call("DELETE", format!("/v1/context/{}{}", encode(context), preserve(options)), None)
        }
        "contexts" => call("GET", "/v1/public/context".into(), None),
        "register-application" => {
            let name = options.required("-a", "application")?;
            options.required("-r", "roles")?;
            let body = ApplicationJson {
                name: name.to_owned(),
                description: options.get("-d").map(str::to_owned),
                token: options.get("-T").map(str::to_owned),
                roles: application_roles(&options.list("-r")),
                meta_data: BTreeMap::new(),
            };
            call_with("POST", "/v1/applications".into(), &body)?
        }
        "renew-application-token" => {
            let name = options.required("-a", "application")?;
            call("PATCH", format!("/v1/applications/{}", encode(name)), None)
        }
        "delete-application" => {
            let name = options.required("-a", "application")?;
            call("DELETE", format!("/v1/applications/{}", encode(name)), None)
        }
        "applications" => call("GET", "/v1/public/applications".into(), None),
        other => return Err(Usage(format!("unknown command {other:?}"))),
    })
}

/// Prints a listing as text (one line per item) or the JSON as it came
/// (also when it is not the listing's shape).
fn print_listing(command: &str, body: &str, json_output: bool) {
    let printed = !json_output
        && match command {
            "cluster" => serde_json::from_str(body).map(print_nodes).is_ok(),
            "replication-groups" => serde_json::from_str(body).map(print_groups).is_ok(),
            "applications" => serde_json::from_str(body).map(print_applications).is_ok(),
            _ => serde_json::from_str(body).map(print_contexts).is_ok(),
        };
    if !printed {
        println!("{body}");
    }
}

fn dash(text: Option<&str>) -> &str {
    text.unwrap_or("-")
}

fn role_list(roles: &[MemberRole]) -> String {
    roles.iter().map(|m| format!("{}:{}", m.node, m.role)).collect::<Vec<_>>().join(",")
}

fn print_nodes(nodes: Vec<ClusterNode>) {
    println!("{:<20} {:<30} {:>8} {:>8} {:<30}", "NAME", "HOST", "GRPC", "HTTP", "INTERNAL");
    for node in nodes {
        let port = node.internal_grpc_port.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let internal = format!("{}:{port}", node.internal_host_name);
        println!("{:<20} {:<30} {:>8} {:>8} {internal:<30}", node.name, node.host_name, node.grpc_port, node.http_port);
    }
}

fn print_groups(groups: Vec<GroupStatus>) {
    println!("{:<20} {:<15} {:<20} ROLES", "NAME", "LEADER", "CONTEXTS");
    for group in groups {
        let full: Vec<&str> =
            group.members.iter().filter(|m| m.below_disk_reserve == Some(true)).map(|m| m.node.as_str()).collect();
        let warning = match full.is_empty() {
            true => String::new(),
            false => format!("  [below the disk reserve, taking no entries: {}]", full.join(",")),
        };
        let (leader, contexts, roles) =
            (dash(group.leader.as_deref()), group.contexts.join(","), role_list(&group.roles));
        let own = group.min_active_backups.map(|n| format!("  [min-active-backups {n}]")).unwrap_or_default();
        println!("{:<20} {leader:<15} {contexts:<20} {roles}{own}{warning}", group.name);
    }
}

fn print_applications(applications: Vec<ApplicationJson>) {
    println!("{:<24} {:<30} ROLES", "NAME", "DESCRIPTION");
    for application in applications {
        let roles: Vec<String> = application
            .roles
            .iter()
            .flat_map(|entry| entry.roles.iter().map(move |role| format!("{role}@{}", entry.context)))
            .collect();
        println!("{:<24} {:<30} {}", application.name, dash(application.description.as_deref()), roles.join(","));
    }
}

fn print_contexts(contexts: Vec<ContextListing>) {
    println!("{:<20} {:<20} {:<15} ROLES", "CONTEXT", "REPLICATION GROUP", "LEADER");
    for context in contexts {
        let (leader, roles) = (dash(context.leader.as_deref()), role_list(&context.roles));
        println!("{:<20} {:<20} {leader:<15} {roles}", context.context, context.replication_group);
    }
}

/// The token in `file` (default `security/.token`), if the file exists.
fn system_token(file: Option<&str>) -> Result<Option<String>, Usage> {
    let path = file.unwrap_or("security/.token");
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => Ok(None),
        Err(e) => Err(Usage(format!("--token-file {path}: {e}"))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(command.as_str(), "help" | "--help" | "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if matches!(command.as_str(), "backup" | "restore") {
        return backups(&command, &args[1..]);
    }
    let prepared = Options::parse(&args[1..]).and_then(|options| {
        let (server, _, token) = connection(&options)?;
        let request = plan(&command, &options)?;
        let json_output = match options.get("-o") {
            None | Some("txt") => false,
            Some("json") => true,
            Some(other) => return Err(Usage(format!("-o {other}: expected txt or json"))),
        };
        Ok((server, token, request, json_output))
    });
    let (server, token, request, json_output) = match prepared {
        Ok(prepared) => prepared,
        Err(Usage(message)) => {
            eprintln!("ranvierctl: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let answer = match send(&server, token.as_deref(), &request) {
        Ok(answer) => answer,
        Err(Unreachable(message)) => {
            eprintln!("ranvierctl: cannot reach the server: {message}");
            return ExitCode::from(3);
        }
    };
    let message = serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| answer.body.trim().to_owned());
    if !(200..300).contains(&answer.status) {
        let code = answer.error_code.unwrap_or_else(|| format!("HTTP {}", answer.status));
        eprintln!("ranvierctl: {command} failed: {code}: {message}");
        return ExitCode::from(1);
    }
    if request.method == "GET" {
        print_listing(&command, &answer.body, json_output);
    } else if json_output {
        println!("{}", answer.body);
    } else {
        println!("{message}");
    }
    ExitCode::SUCCESS
}

/// The server, token and options of a command.
fn connection(options: &Options) -> Result<(http::Server, String, Option<String>), Usage> {
    let url = server_url(options);
    let server = server(&url, options)?;
    Ok((server, url, token(options)?))
}

/// `-S`, or the local node's default.
fn server_url(options: &Options) -> String {
    let default = if options.flag("-s") { "https://localhost:8024" } else { "http://localhost:8024" };
    options.get("-S").unwrap_or(default).to_owned()
}

/// `-t`, or the system token a node on this machine wrote.
fn token(options: &Options) -> Result<Option<String>, Usage> {
    match options.get("-t") {
        Some(token) => Ok(Some(token.to_owned())),
        None => system_token(options.get("--token-file")),
    }
}

/// A server with the URL it was named by.
type Named = (http::Server, String);

/// The servers (`-S`, comma-separated) and token of a command that may
/// use any of several nodes.
fn connections(options: &Options) -> Result<(Vec<Named>, Option<String>), Usage> {
    let listed = server_url(options);
    let mut servers = Vec::new();
    for url in listed.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        servers.push((server(url, options)?, url.to_owned()));
    }
    if servers.is_empty() {
        return Err(Usage(format!("-S {listed}: no server named")));
    }
    Ok((servers, token(options)?))
}

/// `backup`, `backup verify`, `backup prune` and `restore`.
fn backups(command: &str, args: &[String]) -> ExitCode {
    let outcome = match (command, args.first().map(String::as_str)) {
        ("backup", Some("verify")) => match args.get(1) {
            Some(dir) => backup::verify(Path::new(dir)).map(|_| ()),
            None => return usage("backup verify <backup folder>"),
        },
        ("backup", Some("prune")) => {
            let Some(dir) = args.get(1) else { return usage("backup prune <dir> --keep <n>") };
            let keep = match Options::parse(&args[2..]) {
                Ok(options) => options.get("--keep").and_then(|k| k.parse::<usize>().ok()),
                Err(Usage(message)) => return usage(&message),
            };
            let Some(keep) = keep.filter(|k| *k >= 1) else { return usage("--keep <n> (at least 1) is required") };
            backup::prune(Path::new(dir), keep).map(|removed| {
                for name in removed {
                    println!("removed {name}");
                }
            })
        }
        _ => {
            let options = match Options::parse(args) {
                Ok(options) => options,
                Err(Usage(message)) => return usage(&message),
            };
            if command == "restore" {
                let (Some(from), Some(data)) = (options.get("--from"), options.get("--data-dir")) else {
                    return usage("restore needs --from <backup folder, or a folder of backups> and --data-dir <dir>");
                };
                backup::restore(Path::new(from), Path::new(data), options.get("--log-dir").map(Path::new)).map(|_| ())
            } else {
                let Some(target) = options.get("--target") else { return usage("backup needs --target <dir>") };
                // `-S` may name several nodes: the first ready one is backed up.
                let (candidates, token) = match connections(&options) {
                    Ok(connections) => connections,
                    Err(Usage(message)) => return usage(&message),
                };
                let contexts = options.list("-c");
                let (server, url) = match backup::first_ready(candidates, token.as_deref(), &contexts) {
                    Ok(chosen) => chosen,
                    Err(backup::Failed(message)) => {
                        eprintln!("ranvierctl: {command} failed: {message}");
                        return ExitCode::from(3);
                    }
                };
                let keep = match options.get("--keep").map(|k| k.parse::<usize>()) {
                    None => None,
                    Some(Ok(keep)) if keep >= 1 => Some(keep),
                    Some(_) => return usage("--keep <n>: a number, at least 1"),
                };
                let asked = backup::Asked {
                    target: target.into(),
                    contexts,
                    incremental: options.flag("--incremental"),
                    keep,
                    summary: options.get("--summary").map(Into::into),
                };
                backup::backup(&server, &url, token.as_deref(), &asked).map(|manifest| println!("{}", manifest.name))
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(backup::Failed(message)) => {
            eprintln!("ranvierctl: {command} failed: {message}");
            ExitCode::from(1)
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("ranvierctl: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
