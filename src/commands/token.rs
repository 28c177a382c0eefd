//! `openptl token`: creates, lists and revokes access tokens in a data
//! directory's `tokens.json` (beside a running service).

use anyhow::Context;
use openptl_rules::RulesConfig;

use crate::cli::TokenAction;

/// Carries out `action` on the tokens of `data_dir`.
pub fn run(
    config: &RulesConfig,
    data_dir: &std::path::Path,
    action: TokenAction,
) -> anyhow::Result<()> {
    use openptl_app::tokens::{NewToken, TokenStore};
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store = TokenStore::open(&data_dir.join("tokens.json"))?;
    let now = chrono::Utc::now();
    match action {
        TokenAction::Create {
            role,
            trusts,
            alliance,
            label,
            expires_in_days,
        } => {
            let role = openptl_app::access::Role::parse(&role).with_context(|| {
                format!(
                    "--role {role}: use coordinator, manager, alliance_viewer, analyst or admin"
                )
            })?;
            if let Some(name) = &alliance {
                anyhow::ensure!(
                    config.alliances.contains_key(name),
                    "--alliance {name} is not in the rules file's [alliances]"
                );
            }
            let (record, secret) = store.create(
                NewToken {
                    role,
                    trusts,
                    alliance,
                    label,
                    expires_at: (expires_in_days > 0)
                        .then(|| now + chrono::Duration::days(expires_in_days)),
                },
                now,
            )?;
            eprintln!(
                "token {} for {} ({}) created; keep the secret below safe, it is not shown again",
                record.id,
                record.label,
                record.role.as_str()
            );
            println!("{secret}");
        }
        TokenAction::List => {
            for t in store.list() {
                println!(
                    "{}  {:<16} {:<28} trusts={} alliance={} expires={} {}",
                    t.id,
                    t.role.as_str(),
                    t.label,
                    t.trusts.join(","),
                    t.alliance.as_deref().unwrap_or("-"),
                    t.expires_at.map_or("never".to_string(), |e| e.to_rfc3339()),
                    if t.revoked_at.is_some() {
                        "REVOKED"
                    } else {
                        ""
                    }
                );
            }
        }
        TokenAction::Revoke { id } => {
            store.revoke(&id, now)?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}
