//! `keyward rekey`: encrypt a database, rotate its encryption key, or decrypt it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::RekeyArgs;
use crate::domain::at_rest::AtRestKey;
use crate::ops::at_rest;
use crate::store::seal::KeyRefused;
use crate::store::{Seal, Store, StoreError};

pub async fn run(
    url: &str,
    key: Option<Arc<AtRestKey>>,
    args: &RekeyArgs,
    export_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let need = |what: &str| {
        key.clone().with_context(|| {
            format!(
                "{what} needs the current key: set KEYWARD_ENCRYPTION_KEY or --encryption-key-file"
            )
        })
    };
    let (from, to) = if args.encrypt {
        (None, Some(need("--encrypt")?))
    } else if let Some(file) = &args.new_key_file {
        let next = at_rest::read_key_file(file)?;
        let current = need("--new-key-file")?;
        anyhow::ensure!(
            next.id() != current.id(),
            "the new key is the current key; generate another (openssl rand -base64 32)"
        );
        (Some(current), Some(next))
    } else if args.decrypt {
        (Some(need("--decrypt")?), None)
    } else {
        anyhow::bail!("say what to do: --encrypt, --new-key-file FILE or --decrypt");
    };
    let redacted = crate::config::redact_url(url);
    let store = match Store::open_with(url, from).await {
        Ok(s) => s,
        Err(StoreError::KeyRefused(KeyRefused::Missing { id })) if args.encrypt => anyhow::bail!(
            "database {redacted} is already encrypted (key id {id}); to change its key, set the current one and use --new-key-file"
        ),
        Err(StoreError::KeyRefused(KeyRefused::Plaintext)) => anyhow::bail!(
            "database {redacted} is not encrypted: there is nothing to {}; --encrypt encrypts it",
            if args.decrypt { "decrypt" } else { "rotate" }
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot open database {redacted}")));
        }
    };
    let to = Seal::new(to);
    let done = at_rest::rekey(&store, &to).await;
    let exports = export_dir.or_else(|| crate::ops::audit_export::files::beside(&store));
    let untouched = crate::store::rekey::left_as_they_were(&store, exports.as_deref());
    store.close().await;
    for f in &untouched {
        tracing::warn!(file = %f, "left as it was by rekey (a damaged journal or an export bundle): delete it once it is no longer needed");
    }
    let done = done?;
    match to.key() {
        Some(k) => println!(
            "re-sealed {} values ({} audit events); database {redacted} is encrypted with key id {}",
            done.values,
            done.events,
            k.id()
        ),
        None => println!(
            "opened {} values ({} audit events); database {redacted} is no longer encrypted",
            done.values, done.events
        ),
    }
    Ok(())
}
