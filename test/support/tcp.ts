import { connect } from 'node:net';

/** 'open' when address:port accepts a TCP connection from this process, else the error code
 *  (ECONNREFUSED...). Loopback addresses answer at once either way: no timeout. */
export function tcpState(address: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port });
    s.on('connect', () => {
      s.destroy();
      resolve('open');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}
