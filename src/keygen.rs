//! `sluice keygen --tenant NAME`: a new random gateway key and the config line holding
//! its SHA-256.

use rand::RngCore;

/// A new gateway key: `sk-sluice-` + 32 bytes (256 bits) of OS randomness, hex.
pub fn new_key() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("sk-sluice-{}", hex::encode(b))
}

/// The text `sluice keygen` prints.
pub fn render(tenant: &str, key: &str) -> String {
    let digest = hex::encode(crate::auth::hash_key(key.as_bytes()));
    format!(
        "# gateway key for tenant `{tenant}` (shown once; give it to the client, keep only the hash)\n\
         {key}\n\
         \n\
         # add to tenants[] in your config:\n\
         - name: {tenant}\n  keys: [ {{ sha256: \"{digest}\" }} ]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let a = new_key();
        let b = new_key();
        assert_ne!(a, b);
        assert!(a.starts_with("sk-sluice-"));
        assert_eq!(a.len(), "sk-sluice-".len() + 64);
        let out = render("team-a", &a);
        let digest = hex::encode(crate::auth::hash_key(a.as_bytes()));
        assert!(out.contains(&digest));
        assert!(out.contains("- name: team-a"));
    }
}
