//! A shim client in a process of its own, for the test that kills it with
//! SIGKILL in the middle of a call, as a crashing daemon would be:
//! `shim-client ADDRESS ID BUNDLE RUNTIME ROOT` creates and starts the task,
//! prints `waiting PID` and blocks in Wait; if Wait ever answers it prints
//! `exited STATUS`.
use std::io::Write;
use std::process::ExitCode;

use proto::protobuf::well_known_types::any::Any;
use proto::protobuf::{Message, MessageField};
use proto::shim::{CreateTaskRequest, StartRequest, WaitRequest};
use proto::shim_ttrpc::TaskClient;

fn run(args: &[String]) -> Result<(), String> {
    let [address, id, bundle, runtime, root] = args else {
        return Err("usage: shim-client ADDRESS ID BUNDLE RUNTIME ROOT".into());
    };
    let ctx = || proto::ttrpc::context::with_timeout(60_000_000_000);
    let client = TaskClient::new(
        proto::ttrpc::Client::connect(address).map_err(|e| format!("connect {address}: {e}"))?,
    );
    let options = proto::runc_options::Options {
        binary_name: runtime.clone(),
        root: root.clone(),
        ..Default::default()
    };
    let created = client
        .create(
            ctx(),
            &CreateTaskRequest {
                id: id.clone(),
                bundle: bundle.clone(),
                options: MessageField::some(Any {
                    type_url: "containerd.runc.v1.Options".into(),
                    value: options.write_to_bytes().map_err(|e| e.to_string())?,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .map_err(|e| format!("Create: {e}"))?;
    client
        .start(
            ctx(),
            &StartRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .map_err(|e| format!("Start: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "waiting {}", created.pid).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let waited = client
        .wait(
            proto::ttrpc::context::with_timeout(0),
            &WaitRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .map_err(|e| format!("Wait: {e}"))?;
    writeln!(out, "exited {}", waited.exit_status).map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shim-client: {e}");
            ExitCode::FAILURE
        }
    }
}
