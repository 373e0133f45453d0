/**
 * Review fan-out (issue 8): devbot publishes `pr_opened` through its supervisor's MCP tool;
 * infrabot, its teammate, is mentioned in the team room and finds the review request in
 * its inbox (delivered to its CLI once, although it arrives by Matrix and by the event
 * log). Real Synapse, real nats-server, two real supervisors; the harnesses are `cat`s
 * (the fan-out is the supervisors' work, not the model's).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REVIEW_REQUEST_KEY, reviewRequestId } from '../../agent-image/src/core/review-request.ts';
import { callTool, deliveredToCli, makeMatrixPod, waitFor } from '../support/matrix-pod.ts';
import { startNats, type NatsServer } from '../../scripts/lib/services/nats.ts';
import { terminate } from '../../scripts/lib/process.ts';
import { runCli, startSupervisor, tmux, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { isReaction, startSynapse, type MatrixTestUser, type Synapse } from '../../scripts/lib/services/synapse.ts';

describe('review fan-out across two agents', () => {
  let synapse: Synapse;
  let nats: NatsServer;
  let alice: MatrixTestUser;
  let devbot: MatrixTestUser;
  let infrabot: MatrixTestUser;
  let room: string;
  const pods: PodFiles[] = [];
  const sups: SupervisorProcess[] = [];

  async function agent(name: string, bot: MatrixTestUser, teammate: { name: string; matrix: string }): Promise<{ pod: PodFiles; sup: SupervisorProcess }> {
    const pod = await makeMatrixPod({
      synapse,
      bot,
      name,
      team: 'acme',
      rooms: [room],
      allowedUsers: [alice.userId],
      teammates: [teammate],
      events: { natsUrl: nats.url, subjectPrefix: 'agents' },
    });
    pods.push(pod);
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    const sup = startSupervisor(pod);
    sups.push(sup);
    await sup.waitForLog((l) => l.msg === 'joined a configured room');
    return { pod, sup };
  }

  beforeAll(async () => {
    [synapse, nats] = await Promise.all([startSynapse(), startNats()]);
    alice = await synapse.register('alice');
    devbot = await synapse.register('devbot');
    infrabot = await synapse.register('infrabot');
    room = await alice.createRoom({ invite: [devbot.userId, infrabot.userId], name: 'acme' });
  });

  afterAll(async () => {
    await Promise.all(sups.map((sup) => terminate(sup.proc, sup.exited)));
    for (const pod of pods) await pod.cleanup();
    await Promise.all([synapse?.close(), nats?.close()]);
  });

  it('devbot publishes pr_opened: infrabot is mentioned in the room and gets the review request once', async () => {
    const dev = await agent('devbot', devbot, { name: 'infrabot', matrix: infrabot.userId });
    const infra = await agent('infrabot', infrabot, { name: 'devbot', matrix: devbot.userId });
    // infrabot's durable consumer of the team's pr_opened exists before devbot publishes.
    await infra.sup.waitForLog((l) => l.msg === 'event consumer started' && l.consumer === 'review-fanout-infrabot', 30_000);

    const published = await callTool(dev.pod, 'publish_event', {
      type: 'pr_opened',
      data: { repo: 'acme/api', number: 42, url: 'https://github.com/acme/api/pull/42', title: 'Retry flaky uploads' },
    });
    expect(published.isError, published.text).toBe(false);
    const eventId = /published (\S+)/.exec(published.text)![1]!;

    // The room: one notice from devbot that mentions infrabot (intentional mentions) and names the PR.
    const notice = await alice.waitForEvent(room, (e) => e.sender === devbot.userId && e.type === 'm.room.message' && String(e.content.body).includes('acme/api#42'));
    expect(notice.content.msgtype).toBe('m.notice');
    expect(notice.content['m.mentions']).toEqual({ user_ids: [infrabot.userId] });
    expect(notice.content[REVIEW_REQUEST_KEY]).toEqual({ event_id: eventId });

    // infrabot: the request reaches its CLI (typed into pane 0), under the one id both paths use.
    const id = reviewRequestId(eventId);
    await waitFor('the review request delivered to infrabot', () => deliveredToCli(infra.sup).includes(id), 60_000);
    await waitFor('on infrabot screen', async () => (await tmux(infra.pod, 'capture-pane', '-p', '-t', 'main:0.0', '-S', '-200')).includes('Retry flaky uploads'));
    // Both paths brought it: infrabot's bridge took the mention (👀 on the notice) and its
    // event-log consumer the event ...
    await alice.waitForEvent(room, (e) => isReaction(e, infrabot.userId, notice.event_id));
    await waitFor('the event-log path', () => infra.sup.logs().some((l) => String(l.msg).startsWith('review request') && l.event === eventId));
    await new Promise((r) => setTimeout(r, 2000));
    // ... and it was delivered once; devbot asked nobody else and took nothing itself.
    expect(deliveredToCli(infra.sup)).toEqual([id]);
    expect(deliveredToCli(dev.sup).filter((m) => m.startsWith('review-request:'))).toEqual([]);
  });

  it('refuses an invalid pr_opened with the field named, and announces nothing', async () => {
    const pod = pods[0]!;
    const before = (await alice.messages(room)).length;
    const r = await callTool(pod, 'publish_event', { type: 'pr_opened', data: { repo: 'acme/api', number: 0, url: 'https://github.com/acme/api/pull/0', title: 'x' } });
    expect(r.isError).toBe(true);
    expect(r.text).toContain('data.number');
    await new Promise((res) => setTimeout(res, 2000));
    expect((await alice.messages(room)).length).toBe(before);
  });
});
