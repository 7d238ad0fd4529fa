import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A private D-Bus session bus with an unlocked gnome-keyring on it: a real Secret Service, for this test only. */
export interface SecretService {
  /** The bus address: `DBUS_SESSION_BUS_ADDRESS` for this process and its children. */
  address: string;
  stop(): Promise<void>;
}

/** Starts a {@link SecretService} (needs `dbus-daemon` and `gnome-keyring-daemon`: apt-get install dbus gnome-keyring). */
export async function startSecretService(): Promise<SecretService> {
  // A fresh keyring directory, so the login keyring is created (and unlocked) with our password.
  const home = await mkdtemp(join(tmpdir(), 'gatehouse-keyring-'));
  const started: ChildProcess[] = [];
  const stop = async () => {
    for (const child of started.reverse()) child.kill('SIGTERM');
    await rm(home, { recursive: true, force: true });
  };
  const bus = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=1'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  started.push(bus);
  const address = await new Promise<string>((resolve, reject) => {
    bus.once('error', reject);
    bus.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
  });
  const env = { ...process.env, DBUS_SESSION_BUS_ADDRESS: address };
  const keyring = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], {
    stdio: ['pipe', 'ignore', 'ignore'],
    env: { ...env, HOME: home, XDG_DATA_HOME: home },
  });
  started.push(keyring);
  keyring.stdin!.end('test-login-password');
  // Wait until the Secret Service name is owned on the bus.
  for (let i = 0; i < 100; i++) {
    try {
      const names = execFileSync(
        'dbus-send',
        [
          '--session',
          '--print-reply',
          '--dest=org.freedesktop.DBus',
          '/org/freedesktop/DBus',
          'org.freedesktop.DBus.ListNames',
        ],
        { env, encoding: 'utf8' },
      );
      if (names.includes('org.freedesktop.secrets')) return { address, stop };
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error('gnome-keyring did not register org.freedesktop.secrets');
}
