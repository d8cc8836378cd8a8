//! `portForward` over SPDY (`portforward.k8s.io`): stream pairs by `requestid`, each data stream
//! connected to an in-process echo service of the pod (see the parent module's docs).

use std::collections::HashMap;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;

use super::registry::PodRegistry;
use super::spdy::{Session, StreamReader, StreamWriter, rst};
use super::{Body, negotiate_upgrade, on_upgrade};

/// The port-forward protocol.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// What a pod listens on: `None` means every port (it declares none).
fn listening_ports(pod: &Pod) -> Option<Vec<u16>> {
    let ports: Vec<u16> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| u16::try_from(p.container_port).ok())
                .collect()
        })
        .unwrap_or_default();
    (!ports.is_empty()).then_some(ports)
}

pub(crate) fn handle(
    _registry: Arc<PodRegistry>,
    pod: Pod,
    req: Request<Incoming>,
) -> Response<Body> {
    let (_protocol, resp) = match negotiate_upgrade(&req, &[PROTOCOL]) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    on_upgrade(req, move |session| serve(session, pod));
    resp
}

#[derive(Default)]
struct Pair {
    error: Option<StreamWriter>,
    data: Option<(StreamReader, StreamWriter)>,
    port: Option<String>,
}

async fn serve(mut session: Session, pod: Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ports = listening_ports(&pod);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = session.accept().await {
        let kind = stream.header("streamtype").unwrap_or("").to_owned();
        let port = stream.header("port").map(str::to_owned);
        let Some(request_id) = stream.header("requestid").map(str::to_owned) else {
            stream.writer().reset(rst::PROTOCOL_ERROR);
            continue;
        };
        let (reader, writer) = stream.split();
        let pair = pairs.entry(request_id.clone()).or_default();
        match kind.as_str() {
            "error" if pair.error.is_none() => pair.error = Some(writer.clone()),
            "data" if pair.data.is_none() => pair.data = Some((reader, writer.clone())),
            _ => {
                writer.reset(rst::PROTOCOL_ERROR);
                continue;
            }
        }
        writer.reply(false);
        if pair.port.is_none() {
            pair.port = port;
        }
        if pair.error.is_some() && pair.data.is_some() {
            let pair = pairs.remove(&request_id).expect("just seen");
            let (error, (reader, data), port) = (
                pair.error.expect("checked"),
                pair.data.expect("checked"),
                pair.port.unwrap_or_default(),
            );
            let name = name.clone();
            let uid = uid.clone();
            let ports = ports.clone();
            tokio::spawn(forward(reader, data, error, port, name, uid, ports));
        }
    }
}

async fn forward(
    mut reader: StreamReader,
    data: StreamWriter,
    error: StreamWriter,
    port: String,
    pod: String,
    uid: String,
    ports: Option<Vec<u16>>,
) {
    let port_num: Option<u16> = port.parse().ok().filter(|p| *p > 0);
    let open = match (port_num, &ports) {
        (None, _) => Err(format!("invalid port {port:?}")),
        (Some(p), Some(list)) if !list.contains(&p) => Err(format!(
            "failed to connect to localhost:{p} inside namespace {uid:?}: connection refused"
        )),
        (Some(p), _) => Ok(p),
    };
    match open {
        Err(msg) => {
            error.write(msg.as_bytes());
            error.close();
            data.close();
        }
        Ok(p) => {
            data.write(format!("{pod} port {p}\n").as_bytes());
            while let Some(chunk) = reader.recv().await {
                if !data.write(&chunk) {
                    break;
                }
            }
            data.close();
            error.close();
        }
    }
}
