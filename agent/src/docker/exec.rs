//! Commands run in a running container through the engine's exec API (a health check's
//! `Exec`): create the exec, start it attached, read its output to the end (keeping only a
//! short tail, for the reason a check failed), then ask for its exit status.
//!
//! The whole run is bounded by the caller's deadline. The engine cannot kill an exec: a
//! command that outlives its deadline goes on in the container, and its result is ignored.

use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use tokio_stream::StreamExt;

use super::{DockerError, Engine};

/// Bytes of a command's output kept (the end of it), for the reason a check failed.
pub const EXEC_OUTPUT_TAIL_BYTES: usize = 256;

/// How a command run in a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Its exit status; `None` if the engine did not say.
    pub exit_code: Option<i64>,
    /// The last [`EXEC_OUTPUT_TAIL_BYTES`] of its stdout and stderr, as text.
    pub output_tail: String,
}

impl Engine {
    /// Runs `command` in the container `id` and waits for it to end, at most `limit` in all.
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
        limit: Duration,
    ) -> Result<ExecOutcome, DockerError> {
        let timed_out = || DockerError::Timeout {
            call: "exec",
            target: id.to_owned(),
            after: limit,
        };
        tokio::time::timeout(limit, self.exec_to_end(id, command))
            .await
            .map_err(|_| timed_out())?
    }

    async fn exec_to_end(&self, id: &str, command: &[String]) -> Result<ExecOutcome, DockerError> {
        let failed = |call: &'static str| {
            move |source| DockerError::Call {
                call,
                target: id.to_owned(),
                source,
            }
        };
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(id, options)
            .await
            .map_err(failed("exec create"))?;
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(1024),
        };
        let mut tail: Vec<u8> = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&created.id, Some(start))
            .await
            .map_err(failed("exec start"))?
        {
            while let Some(chunk) = output.next().await {
                let bytes = chunk.map_err(failed("exec output"))?.into_bytes();
                tail.extend_from_slice(&bytes);
                if tail.len() > EXEC_OUTPUT_TAIL_BYTES {
                    tail.drain(..tail.len() - EXEC_OUTPUT_TAIL_BYTES);
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(failed("exec inspect"))?;
        Ok(ExecOutcome {
            exit_code: inspected.exit_code,
            output_tail: String::from_utf8_lossy(&tail).trim().to_owned(),
        })
    }
}
