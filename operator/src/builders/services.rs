//! The cluster's two Services: the headless one that gives each pod its
//! DNS name (publishing pods that are not ready yet, because peers must
//! reach each other to form the cluster before any is ready), and the
//! client one (gRPC and HTTP, ready pods only).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta;
use crate::names;
use crate::validate::ValidCluster;

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The headless Service `<cluster>-internal`.
pub fn headless(cluster: &ValidCluster) -> Service {
    let ports = &cluster.resource.spec.ports;
    Service {
        metadata: meta::of_cluster(cluster, names::headless_service(&cluster.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::cluster_selector(&cluster.name)),
            ports: Some(vec![port("internal", ports.internal), port("grpc", ports.client), port("http", ports.http)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The client Service `<cluster>`.
pub fn client(cluster: &ValidCluster) -> Service {
    let ports = &cluster.resource.spec.ports;
    Service {
        metadata: meta::of_cluster(cluster, names::client_service(&cluster.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(names::cluster_selector(&cluster.name)),
            ports: Some(vec![port("grpc", ports.client), port("http", ports.http)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
