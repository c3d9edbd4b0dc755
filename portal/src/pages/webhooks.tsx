/** Webhooks: create (secret shown once), test, rotate the secret, delete, recent deliveries with redeliver. */
import type { FormEvent } from "react";
import { useState } from "react";
import { api, query } from "../api/client.ts";
import type { CreatedWebhook, List, RotatedWebhook, Webhook, WebhookDelivery } from "../api/types.ts";
import { webhookEvents } from "../api/types.ts";
import { CheckboxGroup, ErrorBox, ListBody, Page, Pager, SecretOnce, StatusBadge } from "../components/ui.tsx";
import { formatDate } from "../format.ts";
import { useAction, useLoad, usePagedList } from "../hooks.ts";

/** The webhooks page. */
export function WebhooksPage() {
  const { list: hooks, pager, pagerProps } = usePagedList<Webhook>((cursor) => `/api/v1/customer/webhooks${query({ limit: 20, cursor })}`, []);
  const [url, setUrl] = useState("");
  const [description, setDescription] = useState("");
  const [events, setEvents] = useState<string[]>(["job.completed", "job.failed"]);
  const [secret, setSecret] = useState<{ title: string; secret: string; note: string } | undefined>(undefined);
  const [notice, setNotice] = useState("");
  const [openDeliveries, setOpenDeliveries] = useState<string | undefined>(undefined);

  const create = useAction(async () => {
    const created = await api<CreatedWebhook>("POST", "/api/v1/customer/webhooks", { body: { url: url.trim(), events, description: description.trim() } });
    setSecret({ title: "Signing secret of the new webhook", secret: created.secret, note: "Your endpoint verifies the GPU-Agent-Signature header with it (docs/webhooks.md). It is shown only this once." });
    setUrl("");
    setDescription("");
    pager.reset();
    await hooks.reload();
  });
  const test = useAction(async (hook: Webhook) => {
    const r = await api<{ delivery_id: string; status: string }>("POST", `/api/v1/customer/webhooks/${encodeURIComponent(hook.id)}/test`, { body: {} });
    setNotice(`A test event was queued for ${hook.url} (delivery ${r.delivery_id}, ${r.status}).`);
    setOpenDeliveries(hook.id);
  });
  const rotate = useAction(async (hook: Webhook) => {
    if (!window.confirm(`Rotate the signing secret of ${hook.url}? The old secret keeps signing for a while, so your endpoint can switch.`)) return;
    const r = await api<RotatedWebhook>("POST", `/api/v1/customer/webhooks/${encodeURIComponent(hook.id)}/rotate-secret`, { body: {} });
    setSecret({
      title: "New signing secret",
      secret: r.secret,
      note: `Deliveries are signed with both the new and the previous secret until ${formatDate(r.previous_secret_expires_at)}. It is shown only this once.`,
    });
    await hooks.reload();
  });
  const remove = useAction(async (hook: Webhook) => {
    if (!window.confirm(`Delete the webhook ${hook.url}? No more events are sent to it.`)) return;
    await api("DELETE", `/api/v1/customer/webhooks/${encodeURIComponent(hook.id)}`);
    if (openDeliveries === hook.id) setOpenDeliveries(undefined);
    setNotice(`The webhook for ${hook.url} was deleted.`);
    await hooks.reload();
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void create.run();
  };

  return (
    <Page title="Webhooks">
      <p className="lead">GPU-Agent calls your HTTPS endpoint when a job ends or an artifact is ready. Each call is signed; see docs/webhooks.md for how to verify it.</p>
      {secret === undefined ? null : <SecretOnce {...secret} onDone={() => setSecret(undefined)} />}
      <section aria-labelledby="create-hook">
        <h2 id="create-hook">Add a webhook</h2>
        <form className="form" onSubmit={submit}>
          <div className="field">
            <label htmlFor="hook-url">Endpoint URL</label>
            <input id="hook-url" type="url" required inputMode="url" placeholder="https://example.com/gpu-agent-events" value={url} onChange={(e) => setUrl(e.target.value)} aria-describedby="hook-url-hint" />
            <span className="hint" id="hook-url-hint">
              A public https:// address.
            </span>
          </div>
          <div className="field">
            <label htmlFor="hook-description">Description</label>
            <input id="hook-description" maxLength={200} value={description} onChange={(e) => setDescription(e.target.value)} />
          </div>
          <CheckboxGroup legend="Events" name="event" options={webhookEvents.map((ev) => ({ value: ev, label: <code>{ev}</code> }))} selected={events} onChange={setEvents} />
          <ErrorBox error={create.error} />
          <button type="submit" className="primary" disabled={create.busy || events.length === 0}>
            {create.busy ? "Adding…" : "Add webhook"}
          </button>
        </form>
      </section>
      <section aria-labelledby="hook-list">
        <h2 id="hook-list">Your webhooks</h2>
        {notice === "" ? null : (
          <p className="success" role="status">
            {notice}
          </p>
        )}
        <ErrorBox error={test.error} />
        <ErrorBox error={rotate.error} />
        <ErrorBox error={remove.error} />
        <ListBody state={hooks} what="webhooks" empty="No webhooks yet.">
          {(rows) => (
            <ul className="hook-list">
              {rows.map((hook) => (
                <li key={hook.id} className="hook">
                  <div className="hook-head">
                    <div>
                      <p className="hook-url">
                        <code>{hook.url}</code>
                      </p>
                      <p className="hint">
                        {hook.events.join(", ")}
                        {hook.description === "" ? "" : ` · ${hook.description}`} · created {formatDate(hook.created_at)}
                      </p>
                    </div>
                    <div className="buttons">
                      <button type="button" disabled={test.busy} onClick={() => void test.run(hook)}>
                        Send test
                      </button>
                      <button type="button" disabled={rotate.busy} onClick={() => void rotate.run(hook)}>
                        Rotate secret
                      </button>
                      <button type="button" aria-expanded={openDeliveries === hook.id} onClick={() => setOpenDeliveries((o) => (o === hook.id ? undefined : hook.id))}>
                        Recent deliveries
                      </button>
                      <button type="button" className="danger" disabled={remove.busy} onClick={() => void remove.run(hook)}>
                        Delete
                      </button>
                    </div>
                  </div>
                  {openDeliveries === hook.id ? <Deliveries hook={hook} /> : null}
                </li>
              ))}
            </ul>
          )}
        </ListBody>
        <Pager {...pagerProps} />
      </section>
    </Page>
  );
}

function Deliveries({ hook }: { hook: Webhook }) {
  const list = useLoad((signal) => api<List<WebhookDelivery>>("GET", `/api/v1/customer/webhooks/${encodeURIComponent(hook.id)}/deliveries?limit=20`, { signal }), [hook.id]);
  const redeliver = useAction(async (d: WebhookDelivery) => {
    await api("POST", `/api/v1/customer/webhooks/${encodeURIComponent(hook.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver`, { body: {} });
    await list.reload();
  });
  return (
    <div className="deliveries">
      <div className="section-head">
        <h3>Recent deliveries</h3>
        <button type="button" onClick={() => void list.reload()} disabled={list.loading}>
          Refresh
        </button>
      </div>
      <ErrorBox error={redeliver.error} />
      <ListBody state={list} what="deliveries" empty="No deliveries yet.">
        {(rows) => (
          <div className="table-scroll">
            <table className="stack-on-phone">
              <thead>
                <tr>
                  <th scope="col">Event</th>
                  <th scope="col">State</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Last answer</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map((d) => (
                  <tr key={d.id}>
                    <td data-label="Event">
                      <code>{d.event_type}</code>
                    </td>
                    <td data-label="State">
                      <StatusBadge status={d.status} />
                    </td>
                    <td className="num" data-label="Attempts">
                      {d.attempts}
                    </td>
                    <td data-label="Last answer">{d.last_status_code === 0 ? d.last_error || "—" : `HTTP ${d.last_status_code}${d.last_error === "" ? "" : ` · ${d.last_error}`}`}</td>
                    <td data-label="Created">{formatDate(d.created_at)}</td>
                    <td className="actions">
                      <button type="button" disabled={redeliver.busy} onClick={() => void redeliver.run(d)}>
                        Redeliver
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </ListBody>
    </div>
  );
}
