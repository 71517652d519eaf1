//! JWT tokens against real etcd 3.4.23, for every sign method etcd takes (RS256/384/512, PS256/384/512,
//! ES256/384/512), with keys as an operator makes them with openssl: etcd and ferrokv started with the same key pair
//! accept each other's tokens. For each method, ferrokv's verifier reads etcd's token as the user and auth revision
//! etcd issued it for, etcd accepts a token ferrokv's signer made, and a token issued by either server works on the
//! other (the two number their auth revisions alike, so neither finds the other's token stale).

mod common;

use std::path::Path;
use std::process::Command;

use server::apply::jwt::Jwt;
use server::proto::etcdserverpb::{self as pb, auth_client::AuthClient, kv_client::KvClient};
use tonic::Request;
use tonic::transport::Channel;

const METHODS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl (scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A key pair for `method` made as etcd's docs make one; `--auth-token`'s value without the ttl.
fn keys(dir: &Path, method: &str) -> String {
    let (private, public) = (dir.join(format!("{method}.key")), dir.join(format!("{method}.pub")));
    let (k, p) = (private.to_str().unwrap(), public.to_str().unwrap());
    match &method[..2] {
        "ES" => {
            let curve = match method {
                "ES256" => "prime256v1",
                "ES384" => "secp384r1",
                _ => "secp521r1",
            };
            openssl(&["ecparam", "-name", curve, "-genkey", "-noout", "-out", k]);
            openssl(&["ec", "-in", k, "-pubout", "-out", p]);
        }
        _ => {
            openssl(&["genrsa", "-out", k, "2048"]);
            openssl(&["rsa", "-in", k, "-pubout", "-out", p]);
        }
    }
    format!("jwt,pub-key={p},priv-key={k},sign-method={method}")
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(format!("http://{endpoint}")).unwrap().connect().await.unwrap()
}

async fn token(ch: &Channel) -> String {
    let r = pb::AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
    AuthClient::new(ch.clone()).authenticate(r).await.unwrap().into_inner().token
}

/// A Range of `foo` carrying `token`.
async fn range_with(ch: &Channel, token: &str) -> Result<(), tonic::Status> {
    let mut r = Request::new(pb::RangeRequest { key: b"foo".to_vec(), ..Default::default() });
    r.metadata_mut().insert("token", token.parse().unwrap());
    KvClient::new(ch.clone()).range(r).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_every_sign_method_pass_between_etcd_and_ferrokv() {
    if !common::etcd::installed("etcd") || !common::etcd::installed("etcdctl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for method in METHODS {
        let option = keys(dir.path(), method);
        let flags = ["--auth-token", option.as_str()];
        let etcd = common::etcd::start_with(
            &dir.path().join(format!("etcd-{method}")),
            common::free_port(),
            common::free_port(),
            &flags,
        );
        let ferrokv = common::start_with(
            &dir.path().join(format!("ferrokv-{method}")),
            common::free_port(),
            common::free_port(),
            &flags,
        );
        common::enable_root_auth(&etcd.endpoint);
        common::enable_root_auth(&ferrokv.endpoint);
        let (etcd_ch, ferrokv_ch) = (channel(&etcd.endpoint).await, channel(&ferrokv.endpoint).await);
        let (etcd_token, ferrokv_token) = (token(&etcd_ch).await, token(&ferrokv_ch).await);

        let ours = Jwt::parse(option.strip_prefix("jwt,").unwrap()).unwrap();
        let (user, revision) =
            ours.verify(&etcd_token).unwrap_or_else(|| panic!("{method}: etcd's token {etcd_token}"));
        assert_eq!(user, "root", "{method}");
        let signed = ours.sign("root", revision).unwrap();
        range_with(&etcd_ch, &signed).await.unwrap_or_else(|e| panic!("{method}: etcd refused ferrokv's token: {e}"));
        let refused = range_with(&etcd_ch, &format!("{signed}x")).await.expect_err("a tampered token");
        assert_eq!(refused.message(), "etcdserver: invalid auth token", "{method}");

        assert_eq!(ours.verify(&ferrokv_token).map(|t| t.1), Some(revision), "{method}: the same auth revision");
        range_with(&etcd_ch, &ferrokv_token).await.unwrap_or_else(|e| panic!("{method}: etcd, ferrokv's token: {e}"));
        range_with(&ferrokv_ch, &etcd_token).await.unwrap_or_else(|e| panic!("{method}: ferrokv, etcd's token: {e}"));
    }
}
