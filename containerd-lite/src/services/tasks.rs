//! Tasks: each call goes to the task's shim over ttrpc (see `crate::runtime`). The
//! ttrpc client is synchronous, so calls run on the blocking pool; Wait holds a thread
//! of its own for as long as the process runs, as containerd holds a goroutine.
use std::sync::Arc;

use containerd_grpc::containerd::services::tasks::v1::*;
use containerd_grpc::containerd::types::Metric;
use containerd_grpc::containerd::v1::types::{Process, ProcessInfo};
use containerd_grpc::prost_types;
use proto::shim_ttrpc::TaskClient;
use tonic::{Request, Response, Status};

use super::{Shared, ns};
use crate::runtime::{
    Conn, CreateParams, Task, TaskManager, call_ctx, ctx, from_any, from_ts, to_any, ttrpc_status,
};

#[derive(Debug)]
pub struct TasksService {
    pub daemon: Shared,
    pub tasks: Arc<TaskManager>,
}

const STOPPED: i32 = 3;

async fn on_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
}

/// Runs `f` against the task's live shim; a task whose shim died answers
/// FailedPrecondition (only Get, Wait and Delete make sense for it).
async fn with_shim<T: Send + 'static>(
    task: Arc<Task>,
    what: &'static str,
    f: impl FnOnce(&TaskClient, &Task) -> Result<T, proto::ttrpc::Error> + Send + 'static,
) -> Result<T, Status> {
    on_blocking(move || match &task.conn {
        Conn::Live(c) => f(c, &task).map_err(|e| ttrpc_status(what, e)),
        Conn::Dead { .. } => Err(Status::failed_precondition(format!(
            "task {}: its shim exited while the daemon was down; only delete remains",
            task.id
        ))),
    })
    .await
}

fn process_of(task: &Task, exec_id: &str) -> Result<Process, Status> {
    match &task.conn {
        Conn::Live(c) => {
            let s = c
                .state(
                    call_ctx(),
                    &proto::shim::StateRequest {
                        id: task.id.clone(),
                        exec_id: exec_id.to_string(),
                        ..Default::default()
                    },
                )
                .map_err(|e| ttrpc_status("shim state", e))?;
            Ok(Process {
                container_id: task.id.clone(),
                id: if exec_id.is_empty() {
                    task.id.clone()
                } else {
                    exec_id.to_string()
                },
                pid: s.pid,
                status: s.status.value(),
                stdin: s.stdin,
                stdout: s.stdout,
                stderr: s.stderr,
                terminal: s.terminal,
                exit_status: s.exit_status,
                exited_at: from_ts(&s.exited_at),
            })
        }
        Conn::Dead {
            pid,
            exit_status,
            exited_at,
        } => Ok(Process {
            container_id: task.id.clone(),
            id: task.id.clone(),
            pid: *pid,
            status: STOPPED,
            exit_status: *exit_status,
            exited_at: *exited_at,
            ..Default::default()
        }),
    }
}

impl TasksService {
    fn task<T>(&self, req: &Request<T>, id: &str) -> Result<Arc<Task>, Status> {
        self.tasks.get(&ns(req)?, id)
    }
}

fn to_mount(m: &containerd_grpc::containerd::types::Mount) -> proto::mount::Mount {
    proto::mount::Mount {
        type_: m.r#type.clone(),
        source: m.source.clone(),
        target: m.target.clone(),
        options: m.options.clone(),
        ..Default::default()
    }
}

/// `ctr task metrics` filters by `id==X`; the filter syntax is containerd's.
struct TaskFields<'a>(&'a Task);

impl crate::filters::Adaptor for TaskFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str) {
            Some("id") if path.len() == 1 => Some(self.0.id.clone()),
            Some("namespace") if path.len() == 1 => Some(self.0.ns.clone()),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl tasks_server::Tasks for TasksService {
    async fn create(
        &self,
        req: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let namespace = ns(&req)?;
        let r = req.into_inner();
        if r.checkpoint.is_some() {
            return Err(Status::unimplemented(
                "containerd-lite: restoring from a checkpoint is not supported",
            ));
        }
        let d = self.daemon.clone();
        let (ns2, id) = (namespace.clone(), r.container_id.clone());
        let container = on_blocking(move || {
            d.db.get_container(&ns2, &id)
                .map_err(|e| Status::from(crate::LiteError::from(e)))
        })
        .await?;
        let spec = container
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .ok_or_else(|| {
                Status::failed_precondition(format!("container {}: no spec", container.id))
            })?;
        let options = r.options.clone().or_else(|| {
            container
                .runtime
                .options
                .as_ref()
                .map(|a| prost_types::Any {
                    type_url: a.type_url.clone(),
                    value: a.value.clone(),
                })
        });
        let params = CreateParams {
            ns: namespace,
            id: r.container_id.clone(),
            runtime: container.runtime.name.clone(),
            spec,
            rootfs: r.rootfs.iter().map(to_mount).collect(),
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            terminal: r.terminal,
            options,
        };
        let tasks = self.tasks.clone();
        let pid = on_blocking(move || tasks.create(params)).await?;
        Ok(Response::new(CreateTaskResponse {
            container_id: r.container_id,
            pid,
        }))
    }

    async fn start(&self, req: Request<StartRequest>) -> Result<Response<StartResponse>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let exec_id = req.into_inner().exec_id;
        let pid = with_shim(task, "shim start", move |c, t| {
            c.start(
                call_ctx(),
                &proto::shim::StartRequest {
                    id: t.id.clone(),
                    exec_id,
                    ..Default::default()
                },
            )
            .map(|r| r.pid)
        })
        .await?;
        Ok(Response::new(StartResponse { pid }))
    }

    async fn delete(
        &self,
        req: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let namespace = ns(&req)?;
        let id = req.into_inner().container_id;
        // A live shim publishes its own /tasks/delete; only for a task whose shim
        // died is there nobody else to tell subscribers.
        let shim_gone = matches!(self.tasks.get(&namespace, &id)?.conn, Conn::Dead { .. });
        let tasks = self.tasks.clone();
        let (ns2, id2) = (namespace.clone(), id.clone());
        let (pid, exit_status, exited_at) = on_blocking(move || tasks.delete(&ns2, &id2)).await?;
        if shim_gone {
            self.daemon.events.publish(
                &namespace,
                "/tasks/delete",
                &containerd_grpc::containerd::events::TaskDelete {
                    container_id: id.clone(),
                    pid,
                    exit_status,
                    exited_at,
                    id: id.clone(),
                },
            );
        }
        Ok(Response::new(DeleteResponse {
            id,
            pid,
            exit_status,
            exited_at,
        }))
    }

    async fn delete_process(
        &self,
        req: Request<DeleteProcessRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let exec_id = req.into_inner().exec_id;
        let e2 = exec_id.clone();
        let r = with_shim(task, "shim delete", move |c, t| {
            c.delete(
                call_ctx(),
                &proto::shim::DeleteRequest {
                    id: t.id.clone(),
                    exec_id: e2,
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(DeleteResponse {
            id: exec_id,
            pid: r.pid,
            exit_status: r.exit_status,
            exited_at: from_ts(&r.exited_at),
        }))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let exec_id = req.into_inner().exec_id;
        let process = on_blocking(move || process_of(&task, &exec_id)).await?;
        Ok(Response::new(GetResponse {
            process: Some(process),
        }))
    }

    async fn list(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let list = self.tasks.list(&ns(&req)?);
        let tasks = on_blocking(move || {
            // A shim that fails to answer is left out, as containerd does.
            Ok(list
                .iter()
                .filter_map(|t| process_of(t, "").ok())
                .collect::<Vec<_>>())
        })
        .await?;
        Ok(Response::new(ListTasksResponse { tasks }))
    }

    async fn kill(&self, req: Request<KillRequest>) -> Result<Response<()>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        with_shim(task, "shim kill", move |c, t| {
            c.kill(
                call_ctx(),
                &proto::shim::KillRequest {
                    id: t.id.clone(),
                    exec_id: r.exec_id,
                    signal: r.signal,
                    all: r.all,
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn exec(&self, req: Request<ExecProcessRequest>) -> Result<Response<()>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        with_shim(task, "shim exec", move |c, t| {
            c.exec(
                call_ctx(),
                &proto::shim::ExecProcessRequest {
                    id: t.id.clone(),
                    exec_id: r.exec_id,
                    terminal: r.terminal,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                    spec: r.spec.as_ref().map(to_any).into(),
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn resize_pty(&self, req: Request<ResizePtyRequest>) -> Result<Response<()>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        with_shim(task, "shim resize pty", move |c, t| {
            c.resize_pty(
                call_ctx(),
                &proto::shim::ResizePtyRequest {
                    id: t.id.clone(),
                    exec_id: r.exec_id,
                    width: r.width,
                    height: r.height,
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn close_io(&self, req: Request<CloseIoRequest>) -> Result<Response<()>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        with_shim(task, "shim close io", move |c, t| {
            c.close_io(
                call_ctx(),
                &proto::shim::CloseIORequest {
                    id: t.id.clone(),
                    exec_id: r.exec_id,
                    stdin: r.stdin,
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn pause(&self, req: Request<PauseTaskRequest>) -> Result<Response<()>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        with_shim(task, "shim pause", move |c, t| {
            c.pause(
                call_ctx(),
                &proto::shim::PauseRequest {
                    id: t.id.clone(),
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn resume(&self, req: Request<ResumeTaskRequest>) -> Result<Response<()>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        with_shim(task, "shim resume", move |c, t| {
            c.resume(
                call_ctx(),
                &proto::shim::ResumeRequest {
                    id: t.id.clone(),
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn list_pids(
        &self,
        req: Request<ListPidsRequest>,
    ) -> Result<Response<ListPidsResponse>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let r = with_shim(task, "shim pids", move |c, t| {
            c.pids(
                call_ctx(),
                &proto::shim::PidsRequest {
                    id: t.id.clone(),
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(ListPidsResponse {
            processes: r
                .processes
                .iter()
                .map(|p| ProcessInfo {
                    pid: p.pid,
                    info: p.info.as_ref().map(from_any),
                })
                .collect(),
        }))
    }

    async fn checkpoint(
        &self,
        _req: Request<CheckpointTaskRequest>,
    ) -> Result<Response<CheckpointTaskResponse>, Status> {
        Err(Status::unimplemented(
            "containerd-lite: checkpoint is not supported (no CRIU)",
        ))
    }

    async fn update(&self, req: Request<UpdateTaskRequest>) -> Result<Response<()>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        with_shim(task, "shim update", move |c, t| {
            c.update(
                call_ctx(),
                &proto::shim::UpdateTaskRequest {
                    id: t.id.clone(),
                    resources: r.resources.as_ref().map(to_any).into(),
                    annotations: r.annotations.into_iter().collect(),
                    ..Default::default()
                },
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn metrics(
        &self,
        req: Request<MetricsRequest>,
    ) -> Result<Response<MetricsResponse>, Status> {
        let namespace = ns(&req)?;
        let filter =
            crate::filters::Filter::parse_all(&req.get_ref().filters).map_err(Status::from)?;
        let list: Vec<Arc<Task>> = self
            .tasks
            .list(&namespace)
            .into_iter()
            .filter(|t| filter.matches(&TaskFields(t)))
            .collect();
        let metrics = on_blocking(move || {
            let mut out = Vec::new();
            for t in &list {
                let Conn::Live(c) = &t.conn else { continue };
                let r = c
                    .stats(
                        call_ctx(),
                        &proto::shim::StatsRequest {
                            id: t.id.clone(),
                            ..Default::default()
                        },
                    )
                    .map_err(|e| ttrpc_status("shim stats", e))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                out.push(Metric {
                    timestamp: Some(prost_types::Timestamp {
                        seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                        nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                    }),
                    id: t.id.clone(),
                    data: r.stats.as_ref().map(from_any),
                });
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(MetricsResponse { metrics }))
    }

    async fn wait(&self, req: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        let task = self.task(&req, &req.get_ref().container_id)?;
        let exec_id = req.into_inner().exec_id;
        // A thread of its own, not the blocking pool: waits last as long as their
        // processes, and enough of them would starve every storage call.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter = move || match &task.conn {
            Conn::Live(c) => c
                .wait(
                    // No deadline: the process decides how long this takes.
                    ctx(0),
                    &proto::shim::WaitRequest {
                        id: task.id.clone(),
                        exec_id,
                        ..Default::default()
                    },
                )
                .map(|w| WaitResponse {
                    exit_status: w.exit_status,
                    exited_at: from_ts(&w.exited_at),
                })
                .map_err(|e| ttrpc_status("shim wait", e)),
            Conn::Dead {
                exit_status,
                exited_at,
                ..
            } => Ok(WaitResponse {
                exit_status: *exit_status,
                exited_at: *exited_at,
            }),
        };
        std::thread::Builder::new()
            .name("task-wait".into())
            .spawn(move || {
                let _ = tx.send(waiter());
            })
            .map_err(|e| Status::internal(format!("starting a wait thread: {e}")))?;
        let r = rx
            .await
            .map_err(|_| Status::internal("wait thread ended without an answer"))??;
        Ok(Response::new(r))
    }
}
