//! `junction demo`: sample backends and a gateway in front of them, with URLs to try.

use std::process::ExitCode;

use anyhow::Context as _;
use junction_runtime::config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data-plane address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Admin-plane address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    admin_listen: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::serve::init_logging();
    let listen = config::parse_address(&args.listen)
        .map_err(anyhow::Error::msg)
        .context("--listen")?;
    let admin_listen = config::parse_address(&args.admin_listen)
        .map_err(anyhow::Error::msg)
        .context("--admin-listen")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let demo = junction_demo::start(listen, admin_listen)
            .await
            .context("the demo cannot start")?;
        let data = demo.server.data_url();
        println!("Junction demo: four sample backends (three REST, one SOAP) behind one gateway.\n");
        println!("  data plane   {data}/connectors/{{connector}}/{{path}}");
        println!("               {data}/views/{{view}}");
        println!(
            "  admin plane  {}/api/v1/connectors",
            demo.server.admin_url()
        );
        println!("  console      {}/console/", demo.server.admin_url());
        println!("\nTry:");
        for (what, url) in junction_demo::urls_to_try(&data) {
            println!("  # {what}\n  curl -s '{url}'\n");
        }
        println!(
            "  # open a case (the body is validated against the definition first)\n  curl -s -X POST '{data}/connectors/helpdesk/cases' -H 'content-type: application/json' \\\n       -d '{{\"title\":\"Printer on fire\",\"requester\":\"e4\",\"priority\":\"high\"}}'\n"
        );
        println!("Press Ctrl-C to stop.");
        demo.server.run_until_signal().await;
        drop(demo.backends);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
