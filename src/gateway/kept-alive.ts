import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/**
 * The gateway's own requests (to the fleet's other gateways, to a capture collector) on kept-alive connections,
 * through node:http: Node's fetch cost the calling gateway about twice the CPU a request (bench:fleet, bench:capture).
 */
export class KeptAlive {
  private readonly http = new HttpAgent({ keepAlive: true });
  private readonly https = new HttpsAgent({ keepAlive: true });

  /** Sends `body` to `url`: the answer's head, its body still to read; a failure (or `options.timeout` idle ms) rejects. */
  send(url: URL, options: RequestOptions, body?: Uint8Array | string): Promise<IncomingMessage> {
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(url, { ...options, agent: secure ? this.https : this.http }, resolve);
      req.on('timeout', () => req.destroy(new Error(`${url.origin} did not answer within ${options.timeout} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Closes the connections kept (the gateway stopping). */
  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
