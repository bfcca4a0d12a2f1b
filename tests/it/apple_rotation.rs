//! Signing-key rotation end to end (SPEC §7): add key 2, activate it, key 1 retiring with
//! its last token's expiry, retire it; nothing signed by a non-active key is handed out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::apple::*;
use crate::support::*;
use tokenvault::Request;

#[tokio::test]
async fn rotation_end_to_end() {
    let (tv, e, clock) = vault_with_key1().await;
    let t1 = token(&e, &admin(), "acme").await.unwrap();
    let c1 = verify(&t1, KEY1);

    // key 2 added: inactive, key 1 still signs
    add_key(&e, "acme", KEY2).await.unwrap();
    let k = keys(&e, "acme").await;
    assert_eq!(key_state(&k, KEY1), "active");
    assert_eq!(key_state(&k, KEY2), "inactive");
    assert_eq!(token(&e, &admin(), "acme").await.unwrap(), t1);

    // activate key 2: the very next token carries key 2's kid, long before renewal
    clock.advance(60);
    e.handle(
        &admin(),
        Request::AppleKeyActivate {
            tenant: "acme".into(),
            key_id: KEY2.into(),
        },
    )
    .await
    .unwrap();
    let t2 = token(&e, &admin(), "acme").await.unwrap();
    let c2 = verify(&t2, KEY2);
    assert!(!verifies_with(&t2, KEY1));
    assert_eq!(c2.iat, clock.get());
    let k = keys(&e, "acme").await;
    assert_eq!(key_state(&k, KEY2), "active");
    assert_eq!(key_state(&k, KEY1), "retiring");
    let k1 = k.iter().find(|k| k.key_id == KEY1).unwrap();
    assert_eq!(
        k1.last_token_exp,
        Some(c1.exp),
        "retiring shows its last token's expiry"
    );

    // another engine on the same file (another CLI process) agrees: key 2's token
    let e_other = {
        drop(e);
        engine_with(&tv, clock.clone(), "")
    };
    let e = e_other;
    assert_eq!(token(&e, &admin(), "acme").await.unwrap(), t2);

    // retire key 1: out of use, still key 2's token
    e.handle(
        &admin(),
        Request::AppleKeyRetire {
            tenant: "acme".into(),
            key_id: KEY1.into(),
            force: false,
        },
    )
    .await
    .unwrap();
    let k = keys(&e, "acme").await;
    assert_eq!(key_state(&k, KEY1), "retired");
    assert!(
        k.iter()
            .find(|k| k.key_id == KEY1)
            .unwrap()
            .retired_at
            .is_some()
    );
    for _ in 0..3 {
        let t = token(&e, &admin(), "acme").await.unwrap();
        assert!(verifies_with(&t, KEY2) && !verifies_with(&t, KEY1));
    }

    // a retiring key whose last token expired shows as retired
    // (rotate back to key 1, then let key 2's last token run out)
    e.handle(
        &admin(),
        Request::AppleKeyActivate {
            tenant: "acme".into(),
            key_id: KEY1.into(),
        },
    )
    .await
    .unwrap();
    let t = token(&e, &admin(), "acme").await.unwrap();
    verify(&t, KEY1);
    assert_eq!(key_state(&keys(&e, "acme").await, KEY2), "retiring");
    clock.advance(DEFAULT_LIFETIME + 1);
    assert_eq!(key_state(&keys(&e, "acme").await, KEY2), "retired");
    // and key 1's renewed token after that long is still key 1's
    let t = token(&e, &admin(), "acme").await.unwrap();
    assert_eq!(verify(&t, KEY1).iat, clock.get());

    // forcing the active key out: no token at all rather than a retired key's
    e.handle(
        &admin(),
        Request::AppleKeyRetire {
            tenant: "acme".into(),
            key_id: KEY1.into(),
            force: true,
        },
    )
    .await
    .unwrap();
    let err = token(&e, &admin(), "acme").await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{err}");
}

#[tokio::test]
async fn nothing_signed_by_a_retired_key_is_handed_out_after_a_change_behind_the_engine() {
    // The engine's memory cache holds key 1's token; then the key table is changed through
    // the vault directly (as a backup restore or any future writer could), not through the
    // engine's key operations. The next hand-out must notice and use key 2.
    let (_tv, e, _clock) = vault_with_key1().await;
    add_key(&e, "acme", KEY2).await.unwrap();
    let t1 = token(&e, &admin(), "acme").await.unwrap();
    verify(&t1, KEY1);
    assert_eq!(token(&e, &admin(), "acme").await.unwrap(), t1); // from memory
    {
        let tx = e.vault().write().unwrap();
        for mut k in tx.apple_keys("acme").unwrap() {
            k.state = if k.key_id == KEY1 {
                "retired"
            } else {
                "active"
            }
            .into();
            tx.put_apple_key("acme", k, None).unwrap();
        }
        tx.commit().unwrap();
    }
    let t = token(&e, &admin(), "acme").await.unwrap();
    assert_ne!(t, t1);
    verify(&t, KEY2);
}
