//! The account IP allowlist over real TCP connections from two loopback addresses (127.0.0.1 is
//! on the list, 127.0.0.2 is not): entries are validated and stored canonically; enforcement
//! refuses the API and the gateway from outside the list and records the refusal; nobody can
//! switch it on, or shorten the list, in a way that shuts out their own address; plans without
//! the feature do not show the setting.

use crate::support::*;
use atrium::domain::plan::{EntitlementsPatch, PlanType};
use serde_json::{json, Value};

/// One request from the local address `src` (any 127.0.0.0/8 address works on Linux loopback):
/// (status, JSON body or null).
async fn from(
    src: &str,
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    from_with(src, port, method, path, key, body, "").await
}

/// [`from`] with extra header lines (each ending in `\r\n`).
async fn from_with(
    src: &str,
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
    headers: &str,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{src}:0").parse().expect("addr"))
        .expect("bind");
    let mut s = sock
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let json = out
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_allowlist_refuses_other_addresses_and_never_locks_out_its_editor() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let dev = t.user("dev@x.test").await;
        t.add_member(a, &owner, &dev, atrium::domain::role::AccountRole::Admin).await;
        let port = t.serve_tcp().await;
        let list = format!("/api/accounts/{a}/ip_allowlist");
        let (inside, outside) = ("127.0.0.1", "127.0.0.2");

        // Bad entries are refused with the reason, and nothing is stored.
        for (bad, why) in [
            (json!({"entries": [{"ip_network": "127.0.0.1/8"}]}), "did you mean 127.0.0.0/8"),
            (json!({"entries": [{"ip_network": "10.0.0.0/8"}, {"ip_network": "10.0.0.0/8"}]}), "listed twice"),
            (json!({"entries": [{"ip_network": "example.com"}]}), "not an IPv4 or IPv6 network"),
            (json!({"entries": [{"ip_network": "10.0.0.0/8", "colour": "red"}]}), "unknown field"),
        ] {
            let (s, v) = from(inside, port, "PUT", &list, &owner.key, Some(bad)).await;
            assert_eq!(s, 422, "{v}");
            assert!(v["detail"].to_string().contains(why), "{v}");
        }
        let (s, v) = from(inside, port, "GET", &list, &owner.key, None).await;
        assert_eq!((s, &v), (200, &json!({"entries": []})));

        let entries = json!({"entries": [
            {"ip_network": "127.0.0.1", "description": "the office"},
            {"ip_network": "2001:DB8::/32", "enabled": false},
        ]});
        let (s, v) = from(inside, port, "PUT", &list, &owner.key, Some(entries)).await;
        assert_eq!(s, 204, "{v}");
        let (_, v) = from(inside, port, "GET", &list, &owner.key, None).await;
        assert_eq!(v["entries"][0]["ip_network"], "127.0.0.1/32", "stored canonically: {v}");
        assert_eq!((v["entries"][1]["ip_network"].as_str(), v["entries"][1]["enabled"].as_bool()), (Some("2001:db8::/32"), Some(false)));
        let (_, v) = from(outside, port, "GET", &format!("{list}/my_access"), &dev.key, None).await;
        assert_eq!(v["allowed"], false, "{v}");
        let (_, v) = from(inside, port, "GET", &format!("{list}/my_access"), &dev.key, None).await;
        assert_eq!(v["allowed"], true, "{v}");

        // Switching enforcement on from outside the list would lock the caller out: refused.
        let settings = format!("/api/accounts/{a}/settings");
        let (s, v) = from(outside, port, "PATCH", &settings, &dev.key, Some(json!({"enforce_ip_allowlist": true}))).await;
        assert_eq!(s, 422, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("shut out your own address (127.0.0.2)"), "{v}");
        let (_, v) = from(inside, port, "GET", &settings, &owner.key, None).await;
        assert_eq!(v["enforce_ip_allowlist"], false);
        let (s, _) = from(inside, port, "PATCH", &settings, &owner.key, Some(json!({"enforce_ip_allowlist": true}))).await;
        assert_eq!(s, 204);

        // Enforced: the API and the gateway refuse 127.0.0.2, even for an Admin; 127.0.0.1 gets in.
        let (s, v) = from(outside, port, "GET", &format!("/api/accounts/{a}/workspaces/{ws}"), &dev.key, None).await;
        assert_eq!(s, 403, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("only accepts requests from its IP allowlist; 127.0.0.2"), "{v}");
        let (s, v) = from(outside, port, "POST", &format!("/api/accounts/{a}/workspaces/{ws}/flows/filter"), &dev.key, Some(json!({}))).await;
        assert_eq!(s, 403, "the gateway checks before forwarding: {v}");
        let (s, _) = from(inside, port, "GET", &format!("/api/accounts/{a}/workspaces/{ws}"), &dev.key, None).await;
        assert_eq!(s, 200);
        let (_, events) = from(inside, port, "POST", &format!("/api/accounts/{a}/events/filter"), &owner.key,
            Some(json!({"filter": {"event": {"name": ["prefect-cloud.request.access-denied.ip-allowlist"]}}}))).await;
        let denied = events["events"].as_array().expect("events");
        assert!(!denied.is_empty() && denied[0]["payload"]["ip"] == "127.0.0.2", "{events}");

        // While enforced, a list without the editor's own address is refused; the stored list stays.
        let (s, v) = from(inside, port, "PUT", &list, &owner.key, Some(json!({"entries": [{"ip_network": "10.0.0.0/8"}]}))).await;
        assert_eq!(s, 422, "{v}");
        let (_, v) = from(inside, port, "GET", &list, &owner.key, None).await;
        assert_eq!(v["entries"][0]["ip_network"], "127.0.0.1/32");
        // Switched off, 127.0.0.2 is back in.
        let (s, _) = from(inside, port, "PATCH", &settings, &owner.key, Some(json!({"enforce_ip_allowlist": false}))).await;
        assert_eq!(s, 204);
        let (s, _) = from(outside, port, "GET", &format!("/api/accounts/{a}/workspaces/{ws}"), &dev.key, None).await;
        assert_eq!(s, 200);

        // A plan without the feature: no setting key (the prefect CLI reads that as "not
        // available"), and the allowlist routes say why.
        crate::plans::plan(&t, &owner, a, PlanType::Team, EntitlementsPatch::default()).await;
        let (_, v) = from(inside, port, "GET", &settings, &owner.key, None).await;
        assert!(v.get("enforce_ip_allowlist").is_none() && v.get("ai_log_summaries").is_some(), "{v}");
        let (s, v) = from(inside, port, "GET", &list, &owner.key, None).await;
        assert_eq!(s, 403, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("does not include the ip_allowlist feature"), "{v}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_address_counts_and_nobody_else_can_claim_one()
{
    each_db(|t| async move {
        let t = t
            .reconfigured(|c| {
                c.trusted_proxies =
                    vec![atrium::domain::ipnet::IpNetwork::parse("127.0.0.1").expect("net")];
            })
            .await;
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let w = t.workspace(a, &owner.key, "prod").await;
        let port = t.serve_tcp().await;
        let xff = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
        let office = xff("203.0.113.5");
        let (s, v) = from_with(
            "127.0.0.1",
            port,
            "PUT",
            &format!("/api/accounts/{a}/ip_allowlist"),
            &owner.key,
            Some(json!({"entries": [{"ip_network": "203.0.113.0/24", "description": "office"}]})),
            "",
        )
        .await;
        assert_eq!(s, 204, "{v}");
        // Through the proxy from the office: allowed, so enforcement can be switched on.
        let settings = format!("/api/accounts/{a}/settings");
        let (_, v) = from_with(
            "127.0.0.1",
            port,
            "GET",
            &format!("/api/accounts/{a}/ip_allowlist/my_access"),
            &owner.key,
            None,
            &office,
        )
        .await;
        assert_eq!(v["allowed"], true, "{v}");
        let (s, v) = from_with(
            "127.0.0.1",
            port,
            "PATCH",
            &settings,
            &owner.key,
            Some(json!({"enforce_ip_allowlist": true})),
            &office,
        )
        .await;
        assert_eq!(s, 204, "{v}");
        let ws = format!("/api/accounts/{a}/workspaces/filter");
        let (s, _) = from_with(
            "127.0.0.1",
            port,
            "POST",
            &ws,
            &owner.key,
            Some(json!({})),
            &office,
        )
        .await;
        assert_eq!(s, 200, "the office, through the trusted proxy");
        // The same for gateway calls (the server's fast path): the office passes the allowlist
        // and meets the unbound workspace's 503; the proxy's own address and a forged entry
        // before the office's are refused.
        let gw = format!("/api/accounts/{a}/workspaces/{w}/flows/filter");
        for (headers, want) in [
            (office.clone(), 503),
            (String::new(), 403),
            (xff("203.0.113.5, 198.51.100.1"), 403),
        ] {
            let (s, v) = from_with(
                "127.0.0.1",
                port,
                "POST",
                &gw,
                &owner.key,
                Some(json!({})),
                &headers,
            )
            .await;
            assert_eq!(s, want, "{headers:?}: {v}");
        }
        // The proxy itself, or a client the proxy forwarded from elsewhere: refused, by address.
        let (s, v) = from_with(
            "127.0.0.1",
            port,
            "POST",
            &ws,
            &owner.key,
            Some(json!({})),
            "",
        )
        .await;
        assert_eq!(s, 403, "{v}");
        let (s, v) = from_with(
            "127.0.0.1",
            port,
            "POST",
            &ws,
            &owner.key,
            Some(json!({})),
            &xff("198.51.100.1"),
        )
        .await;
        assert_eq!(s, 403, "{v}");
        assert!(
            v["detail"].as_str().unwrap_or("").contains("198.51.100.1"),
            "{v}"
        );
        // A client cannot claim the office by writing the header itself: the proxy appends the
        // real address, and that is what counts.
        let (s, v) = from_with(
            "127.0.0.1",
            port,
            "POST",
            &ws,
            &owner.key,
            Some(json!({})),
            &xff("203.0.113.5, 198.51.100.1"),
        )
        .await;
        assert_eq!(s, 403, "{v}");
        // A peer that is not a trusted proxy is believed about nothing.
        let (s, v) = from_with(
            "127.0.0.2",
            port,
            "POST",
            &ws,
            &owner.key,
            Some(json!({})),
            &office,
        )
        .await;
        assert_eq!(s, 403, "{v}");
        assert!(
            v["detail"].as_str().unwrap_or("").contains("127.0.0.2"),
            "{v}"
        );
        // Audit records carry the forwarded address.
        let (_, events) = from_with(
            "127.0.0.1",
            port,
            "POST",
            &format!("/api/accounts/{a}/events/filter"),
            &owner.key,
            Some(
                json!({"filter": {"event": {"name": ["prefect-cloud.account-settings.updated"]}}}),
            ),
            &office,
        )
        .await;
        assert_eq!(
            events["events"][0]["client"]["ip"], "203.0.113.5",
            "{events}"
        );
    })
    .await;
}

/// Issue 16: routes that name a workspace or account without `/api/accounts/{a}` in their path,
/// and the caller's own lists, follow the account's allowlist too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_outside_the_account_path_and_the_callers_lists_follow_the_allowlist() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let member = t.user("member@x.test").await;
        t.add_member(a, &owner, &member, atrium::domain::role::AccountRole::Member).await;
        let (s, v) = t
            .call(axum::http::Method::POST, &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"), Some(&owner.key),
                Some(json!([{"user_id": member.id, "workspace_role_id": atrium::domain::role::BuiltinWorkspaceRole::Viewer.id()}])))
            .await;
        assert_eq!(s.as_u16(), 200, "{v}");
        let port = t.serve_tcp().await;
        let (inside, outside) = ("127.0.0.1", "127.0.0.2");
        let (s, _) = from(inside, port, "PUT", &format!("/api/accounts/{a}/ip_allowlist"), &owner.key,
            Some(json!({"entries": [{"ip_network": "127.0.0.1"}]}))).await;
        assert_eq!(s, 204);
        let (s, _) = from(inside, port, "PATCH", &format!("/api/accounts/{a}/settings"), &owner.key,
            Some(json!({"enforce_ip_allowlist": true}))).await;
        assert_eq!(s, 204);
        for path in [
            format!("/api/accounts/{a}/workspaces/{ws}"),
            format!("/api/workspaces/{ws}"),
            format!("/api/me/workspaces/{ws}/scopes"),
            format!("/api/me/workspaces/{ws}/has_scope?scope=see_flows"),
            format!("/api/me/accounts/{a}/permissions"),
            format!("/api/me/accounts/{a}/has_permission?permission=read:account"),
        ] {
            let (s, v) = from(outside, port, "GET", &path, &member.key, None).await;
            assert_eq!(s, 403, "{path} from outside: {v}");
            let (s, v) = from(inside, port, "GET", &path, &member.key, None).await;
            assert_eq!(s, 200, "{path} from inside: {v}");
        }
        // The caller's own lists leave the account out from outside.
        let (_, v) = from(outside, port, "GET", "/api/me/workspaces", &member.key, None).await;
        assert_eq!(v, json!([]), "{v}");
        let (_, v) = from(outside, port, "GET", "/api/me/accounts", &member.key, None).await;
        assert_eq!(v, json!([]), "{v}");
        let (_, v) = from(inside, port, "GET", "/api/me/workspaces", &member.key, None).await;
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    })
    .await;
}
