//! `keyward audit …`: the provable audit log from the console.

use anyhow::Context;

use crate::cli::AuditCommand;
use crate::domain::audit::{Action, Source, Status};
use crate::ops::app::App;
use crate::ops::audit_log::{self, KeyRing, KeySource, Mode, Verdict, Why};

pub async fn run(app: &App, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => {
            app.audit
                .sync()
                .await
                .context("the audit trail is not readable")?;
            let mode = if args.full { Mode::Full } else { Mode::Quick };
            let report = audit_log::verify(app, mode, false, &|done, total| {
                if total > 50_000 && done % 100_000 < 2_000 {
                    eprintln!("verified {done} of {total} events");
                }
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let verdict = serde_json::to_value(report.verdict)?;
                println!(
                    "{}: {} events, root {}",
                    verdict.as_str().unwrap_or_default(),
                    report.tree.size,
                    report.tree.root
                );
                if let Some(c) = &report.checkpoint {
                    println!(
                        "newest checkpoint: size {} at {} ({})",
                        c.size, c.time, c.kind
                    );
                }
                if let Some(p) = &report.first_problem {
                    println!("first problem: {} (seq {:?}): {}", p.kind, p.seq, p.detail);
                }
                println!("{}", report.next_step);
            }
            anyhow::ensure!(
                report.verdict == Verdict::Ok,
                "the audit trail did not verify"
            );
            Ok(())
        }
        AuditCommand::PublicKey => {
            let key = app
                .audit_log
                .public_key()
                .context("no audit signing key is configured (--audit-signing-key)")?;
            println!("{key}");
            Ok(())
        }
        AuditCommand::RotateKey => {
            let Some(KeySource::File(path)) = &app.audit_log.settings.signing_key else {
                anyhow::bail!(
                    "rotate-key rotates a key file; with the key in a setting, put the new key first and the old one after it yourself"
                );
            };
            let ring = KeyRing::rotate(path, &app.audit_log.origin)?;
            println!(
                "New audit signing key: {}\nThe old key co-signs the next checkpoint and keeps verifying older ones. Restart the server(s) to use it.",
                ring.current.verifying()
            );
            Ok(())
        }
        AuditCommand::Restored(args) => {
            anyhow::ensure!(
                args.confirm,
                "`keyward audit restored --confirm`: this declares that the database was restored from a backup on purpose"
            );
            let head = crate::store::audit::tree::head(&app.store).await?;
            let mut event = crate::ops::CallMeta::new(Source::Cli).event(
                app.now(),
                Action::AuditRestore,
                Status::Success,
                "operator",
            );
            event.reason = Some(format!(
                "restored from a backup: the log continues from seq {}",
                head.size
            ));
            app.audit.record(event).await?;
            app.audit.sync().await?;
            let signed = audit_log::sign(app, Why::Restored)
                .await?
                .context("no audit signing key is configured (--audit-signing-key)")?;
            println!("Signed a restored-at checkpoint at size {}.", signed.size);
            Ok(())
        }
    }
}
