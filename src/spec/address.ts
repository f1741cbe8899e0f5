/** Parsing and checking of node addresses; IPv6 is not supported, but must not crash anything. */

export const PORT_RANGE = 'an integer from 1 to 65535';

/** Why `host` is not usable as a node host, or undefined when it is. */
export function hostProblem(host: string): string | undefined {
  if (host.includes(':') || host.startsWith('[')) {
    return `host "${host}" looks like an IPv6 address, which is not supported; use an IPv4 address or a hostname`;
  }
  if (/^[0-9.]+$/.test(host)) {
    const octets = host.split('.');
    const ok = octets.length === 4 && octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255);
    return ok ? undefined : `host "${host}" is not a valid IPv4 address`;
  }
  const label = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
  if (host.length > 253 || !host.split('.').every((l) => label.test(l))) {
    return `host "${host}" is not a valid hostname or IPv4 address`;
  }
  return undefined;
}

export type ParsedAddress = { host: string; port: number } | { error: string };

/** Parses a "host:port" node string; errors name the node as written. */
export function parseAddress(text: string): ParsedAddress {
  const node = `node "${text}"`;
  // The last colon, so that an IPv6 address reaches the host check instead of a confusing port error.
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { error: `${node} must be "host:port" (no port given)` };
  const host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (host === '') return { error: `${node} has no host; write "host:port"` };
  if (portText === '') return { error: `${node} has no port; write "host:port"` };
  if (!/^\d+$/.test(portText)) return { error: `${node}: port "${portText}" is not a number` };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { error: `${node}: port ${portText} is out of range (must be ${PORT_RANGE})` };
  const problem = hostProblem(host);
  if (problem) return { error: `${node}: ${problem}` };
  return { host, port };
}
