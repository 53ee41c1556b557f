import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** The code of a connection not made in time (KeptAlive.send's connectTimeoutMs): the request never left. */
export const CONNECT_TIMEOUT = 'ECONNECTTIMEOUT';

/**
 * The gateway's own requests (to the fleet's other gateways, to a capture collector) on kept-alive connections,
 * through node:http: Node's fetch cost the calling gateway about twice the CPU a request (bench:fleet, bench:capture).
 */
export class KeptAlive {
  private readonly http = new HttpAgent({ keepAlive: true });
  private readonly https = new HttpsAgent({ keepAlive: true });

  /**
   * Sends `body` to `url`: the answer's head, its body still to read; a failure (or `options.timeout` idle ms)
   * rejects — and a new connection not made within `connectTimeoutMs`, with the code CONNECT_TIMEOUT (nothing was
   * sent). Without it a machine gone (a blackholed address) holds the request for the kernel's ~2 minutes of SYNs.
   */
  send(url: URL, { connectTimeoutMs, ...options }: RequestOptions & { connectTimeoutMs?: number }, body?: Uint8Array | string): Promise<IncomingMessage> {
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(url, { ...options, agent: secure ? this.https : this.http }, resolve);
      req.on('timeout', () => req.destroy(new Error(`${url.origin} did not answer within ${options.timeout} ms`)));
      req.on('error', reject);
      if (connectTimeoutMs)
        req.once('socket', (socket) => {
          if (!socket.connecting) return; // (a kept-alive connection, made before)
          const late = new Error(`${url.origin} did not take a connection within ${connectTimeoutMs} ms`);
          const timer = setTimeout(() => req.destroy(Object.assign(late, { code: CONNECT_TIMEOUT })), connectTimeoutMs);
          socket.once('connect', () => clearTimeout(timer)).once('close', () => clearTimeout(timer));
        });
      req.end(body);
    });
  }

  /** Closes the connections kept (the gateway stopping). */
  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
