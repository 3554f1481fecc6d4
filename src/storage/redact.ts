/** Removes credentials from a connection URL (`redis://:pw@h` → `redis://***@h`); never throws. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.username || url.password) {
      url.username = '***';
      url.password = '';
    }
    for (const name of [...url.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(name)) url.searchParams.set(name, '***');
    }
    return url.toString().replace('***:@', '***@');
  } catch {
    // Multi-host URIs (mongodb://u:p@h1,h2/db) are not WHATWG URLs: remove the userinfo textually.
    const stripped = raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1***@');
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(stripped) ? stripped : '<unparseable url>';
  }
}

/** Replaces the password of `url` wherever it appears in `message` (a driver error may echo it); never throws. */
export function withoutPassword(message: string, url: string): string {
  let password = '';
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {
    return message;
  }
  // Very short passwords would garble the message and cannot be told apart from ordinary text anyway.
  return password.length >= 3 ? message.split(password).join('***') : message;
}
