//! Worker actors: each lives on its own arbiter (thread) and runs the jobs the
//! supervisor hands it, each inside the slot it was granted.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};

use crate::context::JobContext;
use crate::job::ErasedBody;
use crate::stop::Stop;

/// Runs granted jobs on its arbiter. Job panics are caught inside each job's task, so a
/// worker never dies of one; it keeps no per-job state, so there is nothing to restart.
#[derive(Debug, Default)]
pub(crate) struct Worker;

impl Actor for Worker {
    type Context = Context<Self>;
}

/// A job with its grant: the context names the key whose slot the supervisor holds for it.
pub(crate) struct Run {
    pub(crate) body: Box<dyn ErasedBody>,
    pub(crate) ctx: JobContext,
    pub(crate) stop: Arc<Stop>,
}

impl Message for Run {
    type Result = ();
}

impl Handler<Run> for Worker {
    type Result = ();

    fn handle(&mut self, msg: Run, _: &mut Context<Self>) {
        msg.body.spawn(msg.ctx, msg.stop);
    }
}
