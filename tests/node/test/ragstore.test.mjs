// ragstore driven by the official `openai` npm SDK. One server for the whole file (started in
// `before`, stopped with SIGTERM in `after`); every group runs against `/v1` and against the
// llama-stack prefix `/v1/openai/v1`.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import OpenAI, { BadRequestError, NotFoundError, toFile } from 'openai';

import { startServer } from '../lib/server.mjs';

const MODEL = 'all-MiniLM-L6-v2';
const DIMS = 384;

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  if (server) await server.stop();
});

function clientFor(prefix) {
  return new OpenAI({
    baseURL: server.root + prefix,
    apiKey: 'anything',
    maxRetries: 0,
    timeout: 30_000,
  });
}

async function collect(pagePromise) {
  const items = [];
  for await (const item of pagePromise) items.push(item);
  return items;
}

async function bytesOf(response) {
  return Buffer.from(await response.arrayBuffer());
}

// Distinct documents, so a search for one topic has an unambiguous best file.
const DOCS = {
  tls: '# Certificates\n\nRotate the TLS certificates of the load balancer every ninety days with certbot renew.\n',
  pasta: '# Cooking\n\nBoil the spaghetti in salted water for nine minutes, then toss it with olive oil and garlic.\n',
  birds: '# Birds\n\nThe arctic tern migrates from the Arctic to the Antarctic and back every year.\n',
};

async function uploadText(client, name, text) {
  return client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'assistants' });
}

for (const [label, prefix] of [
  ['v1', '/v1'],
  ['llama-stack prefix', '/v1/openai/v1'],
]) {
  describe(`openai SDK against ${prefix} (${label})`, () => {
    let client;
    before(() => {
      client = clientFor(prefix);
    });

    describe('files', () => {
      it('creates, retrieves, lists, downloads and deletes a file', async () => {
        const bytes = Buffer.concat([Buffer.from('hello ragstore\n'), randomBytes(64)]);
        const created = await client.files.create({
          file: await toFile(bytes, 'hello.bin'),
          purpose: 'assistants',
        });
        assert.match(created.id, /^file-/);
        assert.equal(created.object, 'file');
        assert.equal(created.bytes, bytes.length);
        assert.equal(created.filename, 'hello.bin');
        assert.equal(created.purpose, 'assistants');

        const got = await client.files.retrieve(created.id);
        assert.equal(got.id, created.id);
        assert.equal(got.bytes, bytes.length);
        assert.equal(got.filename, 'hello.bin');

        const listed = await collect(client.files.list({ purpose: 'assistants' }));
        assert.ok(listed.some((f) => f.id === created.id), 'new file is listed');
        const page = await client.files.list({ limit: 1, order: 'desc' });
        assert.equal(page.data.length, 1);

        const content = await client.files.content(created.id);
        assert.equal(content.status, 200);
        assert.deepEqual(await bytesOf(content), bytes);

        const deleted = await client.files.delete(created.id);
        assert.deepEqual(
          { id: deleted.id, object: deleted.object, deleted: deleted.deleted },
          { id: created.id, object: 'file', deleted: true },
        );
        await assert.rejects(client.files.retrieve(created.id), (err) => {
          assert.ok(err instanceof NotFoundError, `expected NotFoundError, got ${err?.constructor?.name}`);
          assert.equal(err.status, 404);
          assert.equal(err.code, 'file_not_found');
          return true;
        });
        await assert.rejects(client.files.content(created.id), NotFoundError);
        const remaining = await collect(client.files.list());
        assert.ok(!remaining.some((f) => f.id === created.id), 'deleted file is not listed');
      });
    });

    describe('uploads', () => {
      it('assembles a file from two parts', async () => {
        const part1 = randomBytes(70 * 1024);
        const part2 = Buffer.from('and the tail of the upload\n');
        const whole = Buffer.concat([part1, part2]);
        const upload = await client.uploads.create({
          filename: 'parts.bin',
          purpose: 'assistants',
          bytes: whole.length,
          mime_type: 'application/octet-stream',
        });
        assert.match(upload.id, /^upload_/);
        assert.equal(upload.status, 'pending');

        const p1 = await client.uploads.parts.create(upload.id, { data: await toFile(part1, 'p1') });
        const p2 = await client.uploads.parts.create(upload.id, { data: await toFile(part2, 'p2') });
        assert.equal(p1.upload_id, upload.id);
        assert.notEqual(p1.id, p2.id);

        const done = await client.uploads.complete(upload.id, {
          part_ids: [p1.id, p2.id],
          md5: createHash('md5').update(whole).digest('hex'),
        });
        assert.equal(done.status, 'completed');
        assert.ok(done.file, 'completed upload carries its file');
        assert.equal(done.file.bytes, whole.length);
        assert.equal(done.file.filename, 'parts.bin');

        assert.deepEqual(await bytesOf(await client.files.content(done.file.id)), whole);
        await client.files.delete(done.file.id);
      });

      it('refuses parts completed in a size that does not add up', async () => {
        const upload = await client.uploads.create({
          filename: 'short.txt',
          purpose: 'assistants',
          bytes: 100,
          mime_type: 'text/plain',
        });
        const p = await client.uploads.parts.create(upload.id, {
          data: await toFile(Buffer.from('only ten.\n'), 'p'),
        });
        await assert.rejects(client.uploads.complete(upload.id, { part_ids: [p.id] }), (err) => {
          assert.ok(err instanceof BadRequestError, `expected BadRequestError, got ${err?.constructor?.name}`);
          assert.equal(err.status, 400);
          assert.equal(err.type, 'invalid_request_error');
          assert.equal(err.param, 'part_ids');
          assert.match(err.message, /add up to 10 bytes/);
          return true;
        });
        const cancelled = await client.uploads.cancel(upload.id);
        assert.equal(cancelled.status, 'cancelled');
      });
    });

    describe('vector stores', () => {
      it('uploads and polls a file, lists, retrieves and updates attributes', async () => {
        const vs = await client.vectorStores.create({ name: 'node-handbook', metadata: { suite: 'node' } });
        assert.match(vs.id, /^vs_/);
        assert.equal(vs.object, 'vector_store');
        assert.equal(vs.name, 'node-handbook');
        assert.deepEqual(vs.metadata, { suite: 'node' });

        const vf = await client.vectorStores.files.uploadAndPoll(
          vs.id,
          await toFile(Buffer.from(DOCS.tls), 'tls.md'),
        );
        assert.equal(vf.status, 'completed', `last_error: ${JSON.stringify(vf.last_error)}`);
        assert.equal(vf.vector_store_id, vs.id);
        assert.equal(vf.last_error, null);
        assert.ok(vf.usage_bytes > 0);

        const files = await collect(client.vectorStores.files.list(vs.id));
        assert.deepEqual(files.map((f) => f.id), [vf.id]);
        const completed = await collect(client.vectorStores.files.list(vs.id, { filter: 'completed' }));
        assert.equal(completed.length, 1);
        const failed = await collect(client.vectorStores.files.list(vs.id, { filter: 'failed' }));
        assert.equal(failed.length, 0);

        const store = await client.vectorStores.retrieve(vs.id);
        assert.equal(store.file_counts.completed, 1);
        assert.equal(store.file_counts.total, 1);
        assert.equal(store.status, 'completed');

        const updated = await client.vectorStores.files.update(vf.id, {
          vector_store_id: vs.id,
          attributes: { team: 'infra', year: 2024, public: true },
        });
        assert.deepEqual(updated.attributes, { team: 'infra', year: 2024, public: true });
        const again = await client.vectorStores.files.retrieve(vf.id, { vector_store_id: vs.id });
        assert.deepEqual(again.attributes, { team: 'infra', year: 2024, public: true });

        const renamed = await client.vectorStores.update(vs.id, { name: 'node-handbook-2' });
        assert.equal(renamed.name, 'node-handbook-2');
        const stores = await collect(client.vectorStores.list({ limit: 100 }));
        assert.ok(stores.some((s) => s.id === vs.id && s.name === 'node-handbook-2'));

        const content = await collect(client.vectorStores.files.content(vf.id, { vector_store_id: vs.id }));
        assert.ok(content.length >= 1);
        assert.ok(content.every((c) => c.type === 'text'));
        const text = content.map((c) => c.text).join('\n');
        assert.match(text, /Rotate the TLS certificates/);

        const detached = await client.vectorStores.files.delete(vf.id, { vector_store_id: vs.id });
        assert.equal(detached.deleted, true);
        assert.equal((await collect(client.vectorStores.files.list(vs.id))).length, 0);
        await client.files.retrieve(vf.id); // detaching keeps the file itself

        const gone = await client.vectorStores.delete(vs.id);
        assert.equal(gone.deleted, true);
        await assert.rejects(client.vectorStores.retrieve(vs.id), (err) => {
          assert.ok(err instanceof NotFoundError);
          assert.equal(err.code, 'vector_store_not_found');
          return true;
        });
        await client.files.delete(vf.id);
      });

      it('runs file batches (createAndPoll, uploadAndPoll, listFiles)', async () => {
        const vs = await client.vectorStores.create({ name: 'node-batches' });
        const uploaded = await Promise.all(
          Object.entries(DOCS).map(([k, text]) => uploadText(client, `${k}.md`, text)),
        );
        const batch = await client.vectorStores.fileBatches.createAndPoll(vs.id, {
          file_ids: uploaded.map((f) => f.id),
        });
        assert.match(batch.id, /^vsfb_/);
        assert.equal(batch.status, 'completed');
        assert.deepEqual(batch.file_counts, {
          in_progress: 0,
          completed: 3,
          failed: 0,
          cancelled: 0,
          total: 3,
        });
        const inBatch = await collect(
          client.vectorStores.fileBatches.listFiles(batch.id, { vector_store_id: vs.id }),
        );
        assert.deepEqual(inBatch.map((f) => f.id).sort(), uploaded.map((f) => f.id).sort());
        assert.ok(inBatch.every((f) => f.status === 'completed'));
        const retrieved = await client.vectorStores.fileBatches.retrieve(batch.id, { vector_store_id: vs.id });
        assert.equal(retrieved.id, batch.id);
        assert.equal(retrieved.file_counts.completed, 3);

        const batch2 = await client.vectorStores.fileBatches.uploadAndPoll(vs.id, {
          files: [
            await toFile(Buffer.from('Notes one: the quarterly report is due in March.\n'), 'one.txt'),
            await toFile(Buffer.from('Notes two: the offsite is planned for October.\n'), 'two.txt'),
          ],
        });
        assert.equal(batch2.status, 'completed');
        assert.equal(batch2.file_counts.completed, 2);
        assert.equal(batch2.file_counts.total, 2);

        const store = await client.vectorStores.retrieve(vs.id);
        assert.equal(store.file_counts.completed, 5);
        assert.equal(store.file_counts.total, 5);

        await client.vectorStores.delete(vs.id);
        const all = await collect(client.files.list());
        for (const f of all) {
          if (['tls.md', 'pasta.md', 'birds.md', 'one.txt', 'two.txt'].includes(f.filename)) {
            await client.files.delete(f.id);
          }
        }
      });

      it('searches with attribute filters (eq, and, or)', async () => {
        const vs = await client.vectorStores.create({ name: 'node-search' });
        const ids = {};
        for (const [k, text] of Object.entries(DOCS)) ids[k] = (await uploadText(client, `${k}.md`, text)).id;
        const batch = await client.vectorStores.fileBatches.createAndPoll(vs.id, {
          files: [
            { file_id: ids.tls, attributes: { topic: 'ops', year: 2024 } },
            { file_id: ids.pasta, attributes: { topic: 'food', year: 2023 } },
            { file_id: ids.birds, attributes: { topic: 'nature', year: 2022 } },
          ],
        });
        assert.equal(batch.status, 'completed');
        assert.equal(batch.file_counts.completed, 3);

        const unfiltered = await collect(
          client.vectorStores.search(vs.id, { query: 'how long to cook spaghetti', max_num_results: 3 }),
        );
        assert.equal(unfiltered.length, 3);
        assert.equal(unfiltered[0].file_id, ids.pasta, 'best hit is the pasta file');
        for (let i = 1; i < unfiltered.length; i++) {
          assert.ok(unfiltered[i - 1].score >= unfiltered[i].score, 'scores are best first');
        }
        assert.deepEqual(unfiltered[0].attributes, { topic: 'food', year: 2023 });
        assert.equal(unfiltered[0].filename, 'pasta.md');
        assert.match(unfiltered[0].content[0].text, /spaghetti/);

        // eq: only the matching file, even though the query is about another one.
        const eq = await collect(
          client.vectorStores.search(vs.id, {
            query: 'how long to cook spaghetti',
            filters: { type: 'eq', key: 'topic', value: 'ops' },
          }),
        );
        assert.ok(eq.length >= 1);
        assert.deepEqual([...new Set(eq.map((h) => h.file_id))], [ids.tls]);

        const and = await collect(
          client.vectorStores.search(vs.id, {
            query: 'certificates',
            filters: {
              type: 'and',
              filters: [
                { type: 'gte', key: 'year', value: 2023 },
                { type: 'ne', key: 'topic', value: 'ops' },
              ],
            },
          }),
        );
        assert.deepEqual([...new Set(and.map((h) => h.file_id))], [ids.pasta]);

        const or = await collect(
          client.vectorStores.search(vs.id, {
            query: 'migration',
            filters: {
              type: 'or',
              filters: [
                { type: 'eq', key: 'topic', value: 'nature' },
                { type: 'lt', key: 'year', value: 2024 },
              ],
            },
            max_num_results: 10,
          }),
        );
        assert.deepEqual([...new Set(or.map((h) => h.file_id))].sort(), [ids.birds, ids.pasta].sort());
        assert.equal(or[0].file_id, ids.birds);

        const none = await collect(
          client.vectorStores.search(vs.id, {
            query: 'anything',
            filters: { type: 'eq', key: 'topic', value: 'no-such-topic' },
          }),
        );
        assert.equal(none.length, 0);

        await client.vectorStores.delete(vs.id);
        for (const id of Object.values(ids)) await client.files.delete(id);
      });
    });

    describe('embeddings and models', () => {
      it('embeds with the local model (base64 default and float)', async () => {
        const input = ['the cat sat on the mat', 'quarterly revenue grew'];
        const b64 = await client.embeddings.create({ model: MODEL, input });
        assert.equal(b64.object, 'list');
        assert.equal(b64.data.length, 2);
        assert.deepEqual(b64.data.map((d) => d.index), [0, 1]);
        for (const d of b64.data) {
          assert.equal(d.embedding.length, DIMS);
          const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
          assert.ok(Math.abs(norm - 1) < 1e-3, `unit vector, norm ${norm}`);
        }
        const floats = await client.embeddings.create({ model: MODEL, input, encoding_format: 'float' });
        assert.ok(Array.isArray(floats.data[0].embedding));
        for (let i = 0; i < DIMS; i++) {
          assert.ok(Math.abs(floats.data[0].embedding[i] - b64.data[0].embedding[i]) < 1e-6);
        }
        assert.ok(b64.usage.prompt_tokens > 0);
      });

      it('lists and retrieves the model', async () => {
        const models = await collect(client.models.list());
        const m = models.find((x) => x.id === MODEL);
        assert.ok(m, `models: ${JSON.stringify(models)}`);
        assert.equal(m.object, 'model');
        assert.equal(typeof m.created, 'number');
        assert.equal(typeof m.owned_by, 'string');
        const one = await client.models.retrieve(MODEL);
        assert.equal(one.id, MODEL);
      });
    });

    describe('errors', () => {
      it('raises the SDK error classes with OpenAI error codes', async () => {
        await assert.rejects(client.embeddings.create({ model: 'no-such-model', input: 'x' }), (err) => {
          assert.ok(err instanceof NotFoundError, `got ${err?.constructor?.name}`);
          assert.equal(err.code, 'model_not_found');
          return true;
        });
        await assert.rejects(client.models.retrieve('no-such-model'), (err) => {
          assert.ok(err instanceof NotFoundError);
          assert.equal(err.code, 'model_not_found');
          return true;
        });
        const vs = await client.vectorStores.create({ name: 'node-errors' });
        await assert.rejects(
          client.vectorStores.files.create(vs.id, { file_id: 'file-doesnotexist' }),
          (err) => {
            assert.ok(err instanceof NotFoundError, `got ${err?.constructor?.name}`);
            assert.equal(err.code, 'file_not_found');
            return true;
          },
        );
        await assert.rejects(
          client.vectorStores.search(vs.id, { query: 'x', max_num_results: 51 }),
          (err) => {
            assert.ok(err instanceof BadRequestError, `got ${err?.constructor?.name}`);
            assert.equal(err.status, 400);
            assert.equal(err.type, 'invalid_request_error');
            assert.equal(err.param, 'max_num_results');
            assert.equal(err.code, null); // as OpenAI: validation errors name the param, not a code
            return true;
          },
        );
        await assert.rejects(
          client.files.create({ file: await toFile(Buffer.from('x'), 'x.txt'), purpose: 'not-a-purpose' }),
          (err) => {
            assert.ok(err instanceof BadRequestError);
            assert.equal(err.param, 'purpose');
            return true;
          },
        );
        await client.vectorStores.delete(vs.id);
      });
    });
  });
}
