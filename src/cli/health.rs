//! `numbering health`: asks a server's gRPC health service whether it serves, for compose
//! healthchecks and scripts (the image holds no grpc_health_probe). Exit 0 when SERVING, 1
//! otherwise (NOT_SERVING, unknown service, no answer in time, no connection).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server's plain-text health address (with TLS on, the --health-listen one).
    #[arg(
        long,
        env = "NUMBERING_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// The service to ask about: "" for the whole server (ready), `liveness` for the process.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Seconds to wait for the answer, connecting included.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

pub async fn run(args: HealthArgs) -> ExitCode {
    match check(&args).await {
        Ok(ServingStatus::Serving) => {
            println!("SERVING");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{}", status.as_str_name());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("health of {}: {e}", args.server);
            ExitCode::FAILURE
        }
    }
}

async fn check(args: &HealthArgs) -> Result<ServingStatus, String> {
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or("--timeout must be a positive number of seconds")?;
    let endpoint = tonic::transport::Endpoint::from_shared(args.server.clone())
        .map_err(|e| format!("not an address: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let answer = tokio::time::timeout(timeout, async {
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    })
    .await
    .map_err(|_| "no answer in time".to_string())??;
    Ok(ServingStatus::try_from(answer.into_inner().status).unwrap_or(ServingStatus::Unknown))
}
