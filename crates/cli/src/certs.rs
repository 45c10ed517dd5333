//! `protolab certs`: the local CA, leaf certificates, trust instructions, and diagnosis.

use std::process::ExitCode;

use clap::Args;

use crate::Context;

/// `protolab certs` arguments.
#[derive(Debug, Args)]
pub struct CertsArgs {}

/// Runs `protolab certs`.
pub async fn run(args: CertsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("certs is not built yet: {args:?} {ctx:?}")
}
