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
            let trusted = match &args.public_key {
                Some(vkey) => Some(vec![
                    crate::domain::checkpoint::VerifyingKey::parse(vkey)
                        .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?,
                ]),
                None => None,
            };
            let report = audit_log::verify_with(app, mode, trusted, &|done, total| {
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
        AuditCommand::Export(args) => export(app, &args).await,
        // Run before any database is opened (`lib::run`).
        AuditCommand::VerifyBundle(args) => verify_bundle(&args, app.store.seal.key().cloned()),
    }
}

/// `keyward audit export --out FILE`: every tenant, no size cap; recorded in the trail.
async fn export(app: &App, args: &crate::cli::ExportArgs) -> anyhow::Result<()> {
    let parse = |what: &str, values: &[String], ok: &dyn Fn(&str) -> bool| {
        values
            .iter()
            .find(|v| !ok(v))
            .map_or(Ok(()), |v| Err(anyhow::anyhow!("unknown {what} {v:?}")))
    };
    parse("action", &args.action, &|v| Action::parse(v).is_some())?;
    parse("status", &args.status, &|v| Status::parse(v).is_some())?;
    parse("source", &args.source, &|v| Source::parse(v).is_some())?;
    let filters = crate::ops::audit::Filters {
        actors: args.actor.clone(),
        roles: args.role.clone(),
        tenants: args.tenant.clone(),
        actions: args
            .action
            .iter()
            .filter_map(|a| Action::parse(a))
            .collect(),
        targets: args.target.clone(),
        statuses: args
            .status
            .iter()
            .filter_map(|s| Status::parse(s))
            .collect(),
        sources: args
            .source
            .iter()
            .filter_map(|s| Source::parse(s))
            .collect(),
        client_ips: args.client_ip.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        time_zone: args.time_zone.clone(),
    };
    anyhow::ensure!(
        !args.private || app.store.seal.is_on(),
        "--private seals the bundle with the database's encryption key, and this database has none"
    );
    let made = crate::ops::audit_export::bundle(
        app,
        crate::domain::tenant::TenantScope::All,
        &filters,
        u64::MAX,
    )
    .await?;
    {
        use std::io::Write;
        let mut f = crate::store::private::file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&args.out)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        if args.private {
            let sealed = app
                .store
                .seal
                .record(crate::domain::at_rest::Place::Export, made.bytes.clone());
            f.write_all(&sealed)?;
        } else {
            f.write_all(&made.bytes)?;
        }
        f.sync_all()?;
    }
    let m = &made.manifest;
    let mut event = crate::ops::CallMeta::new(Source::Cli).event(
        app.now(),
        Action::AuditExport,
        Status::Success,
        "operator",
    );
    event.reason = Some(format!(
        "exported {} events (seq {:?}..{:?}) proven in a tree of {}, sha256 {}",
        m.events, m.first_seq, m.last_seq, m.tree_size, made.sha256
    ));
    app.audit.record(event).await?;
    println!(
        "Wrote {} ({} events, seq {}..{}, tree size {}, sha256 {}).\nCheck it with: keyward audit verify-bundle {} --public-key \"$(keyward audit public-key)\"",
        args.out.display(),
        m.events,
        m.first_seq.map_or("-".into(), |s| s.to_string()),
        m.last_seq.map_or("-".into(), |s| s.to_string()),
        m.tree_size,
        made.sha256,
        args.out.display()
    );
    Ok(())
}

/// `keyward audit verify-bundle FILE --public-key VKEY`: offline, exit 0 only when it verifies.
pub fn verify_bundle(
    args: &crate::cli::VerifyBundleArgs,
    key: Option<std::sync::Arc<crate::domain::at_rest::AtRestKey>>,
) -> anyhow::Result<()> {
    use crate::domain::checkpoint::VerifyingKey;
    let keys = args
        .public_key
        .iter()
        .map(|k| {
            let text = if std::path::Path::new(k).is_file() {
                std::fs::read_to_string(k).with_context(|| format!("cannot read {k}"))?
            } else {
                k.clone()
            };
            VerifyingKey::parse(text.trim()).map_err(|e| anyhow::anyhow!("--public-key: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stored = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let sealed = stored.first() == Some(&crate::domain::at_rest::SEALED_RECORD);
    anyhow::ensure!(
        !sealed || key.is_some(),
        "this bundle is private (sealed with the database's encryption key): give that key with KEYWARD_ENCRYPTION_KEY or --encryption-key-file"
    );
    let bytes = crate::store::Seal::new(key)
        .open_record(crate::domain::at_rest::Place::Export, &stored)
        .context("this private bundle does not open with the encryption key given (another key, or the file was changed)")?;
    match crate::domain::bundle::check(&bytes, &keys) {
        Ok(v) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "ok: {} events (seq {}..{}) of {} proven in its tree of {} (root {}), signed by {}{}",
                    v.events,
                    v.first_seq.map_or("-".into(), |s| s.to_string()),
                    v.last_seq.map_or("-".into(), |s| s.to_string()),
                    v.origin,
                    v.tree_size,
                    v.root,
                    v.signed_by,
                    if v.truncated {
                        " (truncated export)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Err(e) => anyhow::bail!("the bundle did not verify: {e}"),
    }
}
