//! The one place that names the `Stream` trait bollard's streams implement (a trait must be
//! in scope to call its methods), so the rest of the module does not care which crate
//! provides it.

pub(super) use tokio_stream::StreamExt;
