-- TLS to upstream Prefect servers (issue 19): a CA bundle replacing the system's roots, and a
-- client certificate with its key (encrypted like the auth string) for mutual TLS.
ALTER TABLE workspace_upstreams ADD COLUMN ca_pem TEXT;
ALTER TABLE workspace_upstreams ADD COLUMN client_cert_pem TEXT;
ALTER TABLE workspace_upstreams ADD COLUMN client_key_enc TEXT;
