/** Quote one argument for /bin/sh. */
export function sh(arg: string): string {
  return /^[A-Za-z0-9_\/.:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
