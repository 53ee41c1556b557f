import { connect, type Socket } from 'node:net';
import { type Frame, FrameReader, type ReadyMessage, writeFrame } from '../models/index.js';
import { type Lifetime, type Replica, type ReplicaProvider, type ReplicaStartSpec, SocketReplica, type StartOptions } from './replica.js';

/**
 * Replicas that run elsewhere (`infergate replica --listen`, on other machines: systemd units, Kubernetes pods),
 * reached over TCP with the same frame protocol. Starting one connects to a listed address not in use; stopping
 * it closes the connection (the remote process stays up, its model loaded, for the next connection).
 */
export class RemoteProvider implements ReplicaProvider {
  private inUse = new Set<string>();

  /** `token`: what remote replicas expect first (their INFERGATE_REPLICA_TOKEN). */
  constructor(
    private addresses: string[],
    private token = process.env.INFERGATE_REPLICA_TOKEN,
  ) {}

  async start(spec: ReplicaStartSpec, { startupTimeoutMs, hangTimeoutMs }: StartOptions): Promise<Replica> {
    const address = this.addresses.find((a) => !this.inUse.has(a));
    if (!address) throw new Error(`every remote replica address is in use (${this.addresses.join(', ')})`);
    this.inUse.add(address);
    try {
      const replica = await this.connect(spec.replicaId, address, startupTimeoutMs, hangTimeoutMs);
      replica.lifetime.ended.then(() => this.inUse.delete(address));
      return replica.replica;
    } catch (err) {
      this.inUse.delete(address);
      throw err;
    }
  }

  private connect(id: string, address: string, timeoutMs: number, hangTimeoutMs?: number): Promise<{ replica: SocketReplica; lifetime: Lifetime }> {
    const at = address.lastIndexOf(':');
    const [host, port] = [address.slice(0, at).replace(/^\[|\]$/g, ''), Number(address.slice(at + 1))];
    const startedAt = performance.now();
    return new Promise((resolve, reject) => {
      // Keep-alive probes find a peer that vanished without closing (a machine powered off, a cable pulled).
      const socket: Socket = connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 10_000 });
      const reader = new FrameReader(undefined);
      const fail = (message: string) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`remote replica ${address}: ${message}`));
      };
      const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
      socket.once('error', (err) => fail(err.message));
      socket.once('close', () => fail('closed the connection'));
      socket.once('connect', () => void writeFrame(socket, { id: 0, op: 'hello', token: this.token }));
      const onFrame = (chunk: Buffer) => {
        let first: Frame | undefined;
        try {
          first = reader.push(chunk)[0];
        } catch (err) {
          return fail(`not a replica: ${(err as Error).message}`);
        }
        if (!first) return;
        if (first.header.op !== 'ready') return fail(String(first.header.message ?? `answered ${first.header.op}`));
        clearTimeout(timer);
        socket.off('data', onFrame).removeAllListeners('error').removeAllListeners('close');
        const { id: _id, op: _op, ...ready } = first.header;
        const lifetime = remoteLifetime(socket, address);
        const totalMs = performance.now() - startedAt;
        const coldStart = { totalMs, spawnMs: totalMs, sessionMs: 0, warmupMs: 0 }; // loaded already: a connection
        resolve({ replica: new SocketReplica(id, socket, ready as unknown as ReadyMessage, coldStart, lifetime, { hangTimeoutMs }), lifetime });
      };
      socket.on('data', onFrame);
    });
  }
}

/** A connection's lifetime: it ends when the connection closes, from either side. */
function remoteLifetime(socket: Socket, address: string): Lifetime {
  return {
    address,
    ended: new Promise((resolve) => socket.once('close', () => resolve(`lost its connection (${address})`))),
    end: () => socket.end(),
    kill: () => socket.destroy(),
  };
}
