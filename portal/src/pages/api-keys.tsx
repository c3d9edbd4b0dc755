/** API keys: create with scopes (the key shown once), list, revoke. */
import type { FormEvent } from "react";
import { useState } from "react";
import { api, query } from "../api/client.ts";
import type { ApiKey, CreatedApiKey } from "../api/types.ts";
import { scopeDescriptions } from "../api/types.ts";
import { CheckboxGroup, ErrorBox, ListBody, Page, Pager, SecretOnce } from "../components/ui.tsx";
import { formatDate } from "../format.ts";
import { useAction, usePagedList } from "../hooks.ts";

/** The API keys page. */
export function ApiKeysPage() {
  const { list: keys, pager, pagerProps } = usePagedList<ApiKey>((cursor) => `/api/v1/customer/api-keys${query({ limit: 20, cursor })}`, []);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(scopeDescriptions.map((s) => s.scope));
  const [created, setCreated] = useState<CreatedApiKey | undefined>(undefined);
  const create = useAction(async () => {
    const result = await api<CreatedApiKey>("POST", "/api/v1/customer/api-keys", { body: { name: name.trim(), scopes } });
    setCreated(result);
    setName("");
    pager.reset();
    await keys.reload();
  });
  const revoke = useAction(async (key: ApiKey) => {
    if (!window.confirm(`Revoke the key "${key.name}" (${key.prefix}…)? Programs using it stop working at once.`)) return;
    await api("DELETE", `/api/v1/customer/api-keys/${encodeURIComponent(key.id)}`);
    await keys.reload();
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void create.run();
  };

  return (
    <Page title="API keys">
      <p className="lead">
        Programs call the API with a key in the <code>X-API-Key</code> header. A key can do only what its scopes allow; keep it secret.
      </p>
      {created === undefined ? null : (
        <SecretOnce
          title={`Your new key "${created.api_key.name}"`}
          secret={created.key}
          note="Copy it now and store it somewhere safe: it is shown only this once."
          onDone={() => setCreated(undefined)}
        />
      )}
      <section aria-labelledby="create-key">
        <h2 id="create-key">Create a key</h2>
        <form className="form" onSubmit={submit}>
          <div className="field">
            <label htmlFor="key-name">Name</label>
            <input id="key-name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} placeholder="e.g. training pipeline" />
          </div>
          <CheckboxGroup
            legend="Scopes"
            name="scope"
            options={scopeDescriptions.map((s) => ({
              value: s.scope,
              label: (
                <>
                  <code>{s.scope}</code> — {s.description}
                </>
              ),
            }))}
            selected={scopes}
            onChange={setScopes}
          />
          <ErrorBox error={create.error} />
          <button type="submit" className="primary" disabled={create.busy || scopes.length === 0}>
            {create.busy ? "Creating…" : "Create key"}
          </button>
        </form>
      </section>
      <section aria-labelledby="key-list">
        <h2 id="key-list">Your keys</h2>
        <ErrorBox error={revoke.error} />
        <ListBody state={keys} what="keys" empty="No keys yet.">
          {(rows) => (
            <div className="table-scroll">
              <table className="stack-on-phone">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Key starts with</th>
                    <th scope="col">Scopes</th>
                    <th scope="col">Created</th>
                    <th scope="col">Last used</th>
                    <th scope="col">State</th>
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((k) => {
                    const revoked = k.revoked_at !== undefined && k.revoked_at !== "";
                    return (
                      <tr key={k.id}>
                        <th scope="row">{k.name}</th>
                        <td data-label="Starts with">
                          <code>{k.prefix}…</code>
                        </td>
                        <td data-label="Scopes">{k.scopes.join(", ")}</td>
                        <td data-label="Created">{formatDate(k.created_at)}</td>
                        <td data-label="Last used">{formatDate(k.last_used_at)}</td>
                        <td data-label="State">{revoked ? `revoked ${formatDate(k.revoked_at)}` : "active"}</td>
                        <td className="actions">
                          {revoked ? null : (
                            <button type="button" className="danger" disabled={revoke.busy} onClick={() => void revoke.run(k)} aria-label={`Revoke ${k.name}`}>
                              Revoke
                            </button>
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
        </ListBody>
        <Pager {...pagerProps} />
      </section>
    </Page>
  );
}
