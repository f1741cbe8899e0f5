import { sh } from '../hosts/shell.js';

/**
 * Shell commands for a node's service. A path is an init script (`/etc/init.d/redis_6379 stop`);
 * anything else is a systemd unit (`systemctl stop redis-server@6351`).
 */
export function serviceCommands(service: string): { exists: string; stop: string; start: string } {
  if (service.startsWith('/')) {
    return { exists: `test -x ${sh(service)}`, stop: `${sh(service)} stop`, start: `${sh(service)} start` };
  }
  return {
    exists: `systemctl cat ${sh(service)} >/dev/null 2>&1`,
    stop: `systemctl stop ${sh(service)}`,
    start: `systemctl start ${sh(service)}`,
  };
}
