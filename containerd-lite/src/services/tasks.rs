//! Tasks need the shim v2 integration, which is a later step: every call answers
//! Unimplemented, saying so.
use containerd_grpc::containerd::services::tasks::v1::*;
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
pub struct TasksService;

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "containerd-lite: Tasks.{method} is not implemented yet (tasks need the shim v2 integration); \
         images, content, snapshots, containers, leases, diff, events and namespaces are served"
    ))
}

macro_rules! unimpl {
    ($($name:ident : $req:ty => $resp:ty),* $(,)?) => {
        #[tonic::async_trait]
        impl tasks_server::Tasks for TasksService {
            $(
                async fn $name(&self, _req: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

unimpl! {
    create: CreateTaskRequest => CreateTaskResponse,
    start: StartRequest => StartResponse,
    delete: DeleteTaskRequest => DeleteResponse,
    delete_process: DeleteProcessRequest => DeleteResponse,
    get: GetRequest => GetResponse,
    list: ListTasksRequest => ListTasksResponse,
    kill: KillRequest => (),
    exec: ExecProcessRequest => (),
    resize_pty: ResizePtyRequest => (),
    close_io: CloseIoRequest => (),
    pause: PauseTaskRequest => (),
    resume: ResumeTaskRequest => (),
    list_pids: ListPidsRequest => ListPidsResponse,
    checkpoint: CheckpointTaskRequest => CheckpointTaskResponse,
    update: UpdateTaskRequest => (),
    metrics: MetricsRequest => MetricsResponse,
    wait: WaitRequest => WaitResponse,
}
