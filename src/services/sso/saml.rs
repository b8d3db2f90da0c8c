//! SAML 2.0 identity providers (the `saml` cargo feature): IdP metadata that must carry a
//! signing certificate, SP-initiated sign-in with a 128-bit AuthnRequest id remembered with its
//! RelayState, IdP-initiated sign-in only where a provider allows it, and the ACS, where samael
//! (xmlsec) verifies the signature and Atrium refuses DTDs, encrypted assertions and replays.

use super::*;

/// Signature algorithms accepted on SAML responses: RSA with SHA-256 or stronger, ECDSA-SHA256
/// (samael accepts RSA-SHA1 unless told otherwise).
const SAML_ALGORITHMS: [samael::crypto::AllowedSignatureAlgorithm; 4] = [
    samael::crypto::AllowedSignatureAlgorithm::RsaSha256,
    samael::crypto::AllowedSignatureAlgorithm::RsaSha384,
    samael::crypto::AllowedSignatureAlgorithm::RsaSha512,
    samael::crypto::AllowedSignatureAlgorithm::EcdsaSha256,
];

/// Largest SAML document accepted (metadata or a decoded response).
const MAX_SAML_BYTES: usize = 512 * 1024;

/// XML that declares a document type can define entities (billion laughs, external entities):
/// refused before any parser sees it.
fn refuses_dtd(xml: &str) -> bool {
    xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY")
}

/// SHA-1 anywhere in a response's signatures — as the signature method or as a reference's
/// digest under an otherwise strong signature. samael's algorithm list covers only the former.
fn uses_sha1(xml: &str) -> bool {
    [
        "http://www.w3.org/2000/09/xmldsig#sha1",
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
    ]
    .iter()
    .any(|alg| xml.contains(alg))
}

/// What the Web Browser SSO profile requires of a bearer assertion beyond what samael checks:
/// an AudienceRestriction naming this account's SP (samael accepts an assertion with none), and
/// for an unsolicited (IdP-initiated) answer no InResponseTo at all — an answer to somebody's
/// SP-initiated request posted without its RelayState is not unsolicited.
fn profile_checks(
    a: &samael::schema::Assertion,
    entity_id: &str,
    solicited: bool,
) -> std::result::Result<(), &'static str> {
    let restrictions = a
        .conditions
        .as_ref()
        .and_then(|c| c.audience_restrictions.as_ref())
        .filter(|r| !r.is_empty())
        .ok_or("the assertion has no audience restriction")?;
    if !restrictions
        .iter()
        .all(|r| r.audience.iter().any(|x| x == entity_id))
    {
        return Err("the assertion is addressed to another service provider");
    }
    if !solicited {
        let answers_a_request = a
            .subject
            .iter()
            .flat_map(|s| s.subject_confirmations.iter().flatten())
            .filter_map(|c| c.subject_confirmation_data.as_ref())
            .any(|d| d.in_response_to.is_some());
        if answers_a_request {
            return Err("this answer belongs to a sign-in started at Atrium; it cannot be used without that sign-in");
        }
    }
    Ok(())
}

/// The service provider for one IdP's metadata. Metadata without a signing certificate is
/// refused: samael would verify nothing with it.
fn service_provider(
    app: &App,
    account: AccountId,
    metadata_xml: &str,
    idp_initiated: bool,
) -> Result<samael::service_provider::ServiceProvider> {
    if metadata_xml.len() > MAX_SAML_BYTES || refuses_dtd(metadata_xml) {
        return Err(Error::validation(
            "metadata: at most 512 KiB of SAML metadata, without a DOCTYPE",
        ));
    }
    let md: samael::metadata::EntityDescriptor = metadata_xml
        .parse()
        .map_err(|e| Error::Validation(format!("metadata: not SAML 2.0 IdP metadata: {e}")))?;
    let sp = samael::service_provider::ServiceProviderBuilder::default()
        .entity_id(sp_entity_id(app, account))
        .metadata_url(sp_entity_id(app, account))
        .acs_url(acs_url(app, account))
        .idp_metadata(md)
        .allow_idp_initiated(idp_initiated)
        .allowed_signature_algorithms(Some(SAML_ALGORITHMS.to_vec()))
        .build()
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("SAML service provider: {e}")))?;
    match sp.idp_signing_certs() {
        Ok(Some(certs)) if !certs.is_empty() => Ok(sp),
        Ok(_) => Err(Error::validation(
            "metadata: the IdP's metadata has no signing certificate, so its answers could not be verified",
        )),
        Err(e) => Err(Error::Validation(format!(
            "metadata: the IdP's signing certificate does not parse: {e}"
        ))),
    }
}

/// The IdP metadata at `url`, fetched now (no redirects followed).
async fn fetch_metadata(url: &str) -> Result<String> {
    let ok = (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 500;
    let uri: axum::http::Uri = url
        .parse()
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| Error::validation("metadata_url: an http(s) URL"))?;
    let req = axum::http::Request::get(uri)
        .body(Vec::new())
        .map_err(|e| Error::Validation(format!("metadata_url: {e}")))?;
    let resp = back_channel(req)
        .await
        .map_err(|e| Error::Validation(format!("metadata_url: {e}")))?;
    if !resp.status().is_success() {
        return Err(Error::Validation(format!(
            "metadata_url: the IdP answered {}",
            resp.status()
        )));
    }
    String::from_utf8(resp.into_body())
        .map_err(|_| Error::validation("metadata_url: the metadata is not UTF-8"))
}

/// IdP metadata given as XML or fetched from its URL, checked as usable: a signing certificate
/// and a SingleSignOnService with the HTTP-Redirect binding. Answers (XML, URL or "", the IdP's
/// entity id).
pub(super) async fn idp_metadata(
    app: &App,
    account: AccountId,
    xml: Option<String>,
    url: Option<String>,
) -> Result<(String, String, String)> {
    let (xml, url) = match (xml, url) {
        (Some(x), None) => (x, String::new()),
        (None, Some(u)) => (fetch_metadata(&u).await?, u),
        _ => {
            return Err(Error::validation(
                "metadata_xml or metadata_url: give exactly one",
            ))
        }
    };
    let sp = service_provider(app, account, &xml, false)?;
    if sp
        .sso_binding_location(samael::metadata::HTTP_REDIRECT_BINDING)
        .is_none()
    {
        return Err(Error::validation(
            "metadata: the IdP offers no SingleSignOnService with the HTTP-Redirect binding",
        ));
    }
    let issuer = sp.idp_metadata.entity_id.clone().unwrap_or_default();
    Ok((xml, url, issuer))
}

/// Creates a SAML provider from uploaded or fetched IdP metadata.
pub(super) async fn create_saml(
    app: &App,
    p: &Principal,
    account: AccountId,
    c: CreateProvider,
) -> Result<ProviderView> {
    if c.issuer.is_some()
        || c.client_id.is_some()
        || c.client_secret.is_some()
        || c.scopes.is_some()
        || c.groups_claim.is_some()
    {
        return Err(Error::validation(
            "issuer, client_id, client_secret, scopes and groups_claim belong to OIDC providers",
        ));
    }
    let name = validate::name("name", &c.name).map_err(Error::Validation)?;
    let (xml, url, issuer) = idp_metadata(app, account, c.metadata_xml, c.metadata_url).await?;
    let idp_initiated = c.idp_initiated.unwrap_or(false);
    let now = app.now();
    let row = store::sso::ProviderRow {
        id: Uuid::new_v4(),
        account_id: account,
        kind: "saml".into(),
        name,
        issuer,
        client_id: String::new(),
        client_secret_enc: String::new(),
        scopes: String::new(),
        email_claim: claim("email_claim", c.email_claim.as_deref().unwrap_or("email"))?,
        name_claim: claim("name_claim", c.name_claim.as_deref().unwrap_or("name"))?,
        groups_claim: match c.groups_attribute.as_deref() {
            None | Some("") => String::new(),
            Some(g) => claim("groups_attribute", g)?,
        },
        enabled: c.enabled.unwrap_or(true),
        created: now,
        updated: now,
        metadata_xml: xml,
        metadata_url: url,
        idp_initiated,
    };
    let payload = json!({"kind": "saml", "issuer": row.issuer, "idp_initiated": idp_initiated});
    save(app, p, row, "created", payload).await
}

/// Atrium's SP metadata for an account (public: IdPs read it).
pub fn sp_metadata(app: &App, account: AccountId) -> Result<String> {
    use samael::traits::ToXml;
    let sp = samael::service_provider::ServiceProviderBuilder::default()
        .entity_id(sp_entity_id(app, account))
        .metadata_url(sp_entity_id(app, account))
        .acs_url(acs_url(app, account))
        .build()
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("SAML service provider: {e}")))?;
    let md = sp
        .metadata()
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("SAML metadata: {e}")))?;
    md.to_string()
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("SAML metadata: {e:?}")))
}

/// Starts a SAML sign-in: an AuthnRequest with a 128-bit random id remembered with its
/// RelayState, sent with the HTTP-Redirect binding.
pub(super) async fn begin_saml(
    app: &App,
    provider: &store::sso::ProviderRow,
    next: &str,
) -> Result<String> {
    let sp = service_provider(
        app,
        provider.account_id,
        &provider.metadata_xml,
        provider.idp_initiated,
    )
    .map_err(unavailable)?;
    let sso = sp
        .sso_binding_location(samael::metadata::HTTP_REDIRECT_BINDING)
        .ok_or_else(|| Error::UpstreamFailed("the IdP offers no HTTP-Redirect sign-in".into()))?;
    let mut req = sp
        .make_authentication_request(&sso)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("AuthnRequest: {e}")))?;
    // samael's own ids carry 32 random bits; ours 128.
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    req.id = format!("id-{}", crate::services::credentials::hex_bytes(&id));
    let relay = random_base62(32);
    let url = req
        .redirect(&relay)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("AuthnRequest: {e}")))?
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("AuthnRequest without destination")))?;
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    store::sso::sweep_logins(&mut tx, app.now()).await?;
    store::sso::insert_login(
        &mut tx,
        &store::sso::LoginRow {
            state_hash: sha256_hex(&relay),
            provider_id: provider.id,
            account_id: provider.account_id,
            nonce: req.id.clone(),
            pkce_verifier_enc: String::new(),
            next: next.to_string(),
            expires_at: app.now() + chrono::Duration::seconds(LOGIN_TTL_SECONDS),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(url.to_string())
}

/// Finishes a SAML sign-in at an account's ACS: the attempt its RelayState names is taken (once)
/// and the response must answer its AuthnRequest; without one, only a provider that allows
/// IdP-initiated sign-in may answer. samael checks the signature (metadata certificates only,
/// RSA-SHA256 or stronger), audience, destination, InResponseTo and validity window; the
/// assertion id is then remembered until it expires, so a replay is refused.
pub async fn finish_saml(
    app: &App,
    account: AccountId,
    post: AcsPost,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(crate::services::auth::NewSession, String)> {
    use base64::Engine;
    let deny = |reason: &'static str, msg: String| refused(app, Some(account), reason, msg);
    if post.saml_response.len() > 2 * MAX_SAML_BYTES {
        return Err(deny("malformed", "the SAML response is too large".into()));
    }
    let xml = base64::engine::general_purpose::STANDARD
        .decode(post.saml_response.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| deny("malformed", "the SAML response is not base64 XML".into()))?;
    if refuses_dtd(&xml) {
        return Err(deny(
            "malformed",
            "the SAML response declares a DOCTYPE".into(),
        ));
    }
    if uses_sha1(&xml) {
        return Err(deny(
            "assertion",
            "the SAML response is signed with SHA-1; configure the IdP to sign with RSA-SHA256"
                .into(),
        ));
    }
    if xml.contains("EncryptedAssertion") {
        return Err(deny(
            "encrypted",
            "encrypted assertions are not supported; turn assertion encryption off for Atrium at the IdP (the connection to Atrium is protected by HTTPS)".into(),
        ));
    }
    let relay = post.relay_state.as_deref().filter(|r| !r.is_empty());
    let attempt = match relay {
        Some(relay) => {
            let mut tx = crate::services::unit::Unit::begin(app).await?;
            let a = store::sso::take_login(&mut tx, &sha256_hex(relay)).await?;
            tx.commit().await?;
            a
        }
        None => None,
    };
    let (providers, request_id, next) = match attempt {
        Some(a) if a.account_id != account => {
            return Err(deny(
                "state",
                "this answer belongs to another account's sign-in".into(),
            ))
        }
        Some(a) if a.expires_at <= app.now() => {
            return Err(deny(
                "expired",
                "the sign-in took too long; start again".into(),
            ))
        }
        Some(a) => {
            let mut c = app.store.reader().await?;
            let p = store::sso::find_provider(&mut c, account, a.provider_id)
                .await?
                .filter(|p| p.enabled && p.kind == "saml")
                .ok_or_else(|| {
                    deny(
                        "provider",
                        "the identity provider is no longer enabled".into(),
                    )
                })?;
            (vec![p], Some(a.nonce), a.next)
        }
        None if relay.is_some() => {
            return Err(deny(
                "state",
                "this sign-in is unknown, was already used or expired; start again".into(),
            ))
        }
        None => {
            let mut c = app.store.reader().await?;
            let ps: Vec<_> = store::sso::find_providers(&mut c, account)
                .await?
                .into_iter()
                .filter(|p| p.enabled && p.kind == "saml" && p.idp_initiated)
                .collect();
            if ps.is_empty() {
                return Err(deny(
                    "idp-initiated",
                    "sign-ins started at the identity provider are not accepted by this account; start from Atrium's sign-in page".into(),
                ));
            }
            (ps, None, "/".to_string())
        }
    };
    // The posted Response's own Destination, read from the document as posted: samael reads it
    // from the signed part only after taking the signature off, and so accepts a signed
    // response without one (SAML bindings §3.5.5.2: a signed message must name its Destination).
    if let Ok(posted) = xml.parse::<samael::schema::Response>() {
        let acs = acs_url(app, account);
        if (posted.signature.is_some() || posted.destination.is_some())
            && posted.destination.as_deref() != Some(acs.as_str())
        {
            return Err(deny(
                "assertion",
                "the SAML response does not name this account's ACS as its Destination".into(),
            ));
        }
    }
    let ids: Option<Vec<&str>> = request_id.as_deref().map(|i| vec![i]);
    let mut last = String::new();
    for provider in providers {
        // A sign-in started here is checked as solicited even where the provider also allows
        // IdP-initiated ones (samael then skips every InResponseTo check).
        let solicited = ids.is_some();
        let sp = service_provider(app, account, &provider.metadata_xml, !solicited)?;
        let assertion = match sp.parse_xml_response(&xml, ids.as_deref()) {
            Ok(a) => a,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        profile_checks(&assertion, &sp_entity_id(app, account), solicited)
            .map_err(|m| deny("assertion", m.to_string()))?;
        let now = app.now();
        let until = assertion
            .conditions
            .as_ref()
            .and_then(|c| c.not_on_or_after)
            .unwrap_or(now + chrono::Duration::hours(1));
        let fresh = {
            let mut tx = crate::services::unit::Unit::begin(app).await?;
            let fresh =
                store::sso::use_assertion(&mut tx, provider.id, &assertion.id, until, now).await?;
            tx.commit().await?;
            fresh
        };
        if !fresh {
            return Err(deny("replay", "this assertion was already used".into()));
        }
        let identity = saml_identity(&provider, &assertion).map_err(|m| deny("claims", m))?;
        let session = complete(app, &provider, &identity, ip, user_agent).await?;
        return Ok((session, next));
    }
    Err(deny(
        "assertion",
        format!("the SAML response does not verify: {last}"),
    ))
}

/// The email (the NameID when it is an address, else the email attribute), name and groups of a
/// verified assertion.
fn saml_identity(
    provider: &store::sso::ProviderRow,
    a: &samael::schema::Assertion,
) -> std::result::Result<Identity, String> {
    let attributes: Vec<&samael::attribute::Attribute> = a
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .collect();
    let values = |names: &[&str]| -> Vec<String> {
        attributes
            .iter()
            .filter(|at| {
                names.iter().any(|n| {
                    at.name.as_deref() == Some(*n) || at.friendly_name.as_deref() == Some(*n)
                })
            })
            .flat_map(|at| at.values.iter().filter_map(|v| v.value.clone()))
            .collect()
    };
    let name_id = a
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .map(|n| n.value.trim().to_string())
        .unwrap_or_default();
    let email = match validate::email(&name_id) {
        Ok(e) => e,
        Err(_) => {
            let found = values(&[provider.email_claim.as_str(), "email", "mail"]);
            let first = found
                .first()
                .ok_or_else(|| "the assertion names no email address".to_string())?;
            validate::email(first).map_err(|e| format!("the email attribute: {e}"))?
        }
    };
    let name = values(&[provider.name_claim.as_str(), "displayName"])
        .into_iter()
        .next()
        .or_else(|| {
            let first = values(&["firstName", "givenName"]).into_iter().next()?;
            let last = values(&["lastName", "surname", "sn"])
                .into_iter()
                .next()
                .unwrap_or_default();
            Some(format!("{first} {last}").trim().to_string())
        });
    let groups = if provider.groups_claim.is_empty() {
        Vec::new()
    } else {
        values(&[provider.groups_claim.as_str()])
            .into_iter()
            .flat_map(|g| {
                g.split(',')
                    .map(|s| s.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|g| !g.is_empty())
            .collect()
    };
    Ok(Identity {
        email,
        name,
        groups,
    })
}
