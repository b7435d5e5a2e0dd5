// Completes the provider's device verification pages as a user in a browser would:
// opens the URL the CLI printed, confirms the code, signs in, allows access.
//
//   node browse.mjs URL USER PASSWORD     (NODE_EXTRA_CA_CERTS=<ca.pem> for https)
//
// Exits 0 once the provider shows "Sign-in complete"; otherwise prints the last page and
// exits 1. Forms are submitted with their hidden fields, as a browser submits them
// (the provider's pages post themselves with a script, which this does not run).

const [url, user, password] = process.argv.slice(2);
if (!url || !user || !password) {
  console.error('usage: node browse.mjs URL USER PASSWORD');
  process.exit(2);
}

const jar = new Map();

function keepCookies(response) {
  for (const header of response.headers.getSetCookie()) {
    const pair = header.split(';')[0];
    const at = pair.indexOf('=');
    const [name, value] = [pair.slice(0, at).trim(), pair.slice(at + 1)];
    if (value === '' || /expires=Thu, 01 Jan 1970/i.test(header)) jar.delete(name);
    else jar.set(name, value);
  }
}

// GETs or POSTs, following redirects; returns the final page.
async function open(target, form) {
  for (let hop = 0; hop < 10; hop += 1) {
    const headers = { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
    let body;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(form).toString();
    }
    const response = await fetch(target, { method: form ? 'POST' : 'GET', headers, body, redirect: 'manual' });
    keepCookies(response);
    if (response.status >= 300 && response.status < 400) {
      target = new URL(response.headers.get('location'), target).href;
      form = undefined;
      continue;
    }
    return { url: target, status: response.status, html: await response.text() };
  }
  throw new Error(`too many redirects from ${target}`);
}

const decode = (s) => s.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&');

let page = await open(url);
for (let step = 0; step < 8; step += 1) {
  if (page.html.includes('Sign-in complete')) {
    console.log(`signed in as ${user}`);
    process.exit(0);
  }
  const action = page.html.match(/<form[^>]*action="([^"]*)"/);
  if (!action) break;
  const fields = {};
  for (const input of page.html.matchAll(/<input[^>]*>/g)) {
    const name = input[0].match(/name="([^"]*)"/);
    const value = input[0].match(/value="([^"]*)"/);
    if (name && /type="hidden"/.test(input[0])) fields[name[1]] = value ? decode(value[1]) : '';
  }
  if (/name="login"/.test(page.html)) Object.assign(fields, { login: user, password });
  page = await open(new URL(decode(action[1]), page.url).href, fields);
}
console.error(`sign-in did not complete; last page (${page.status} ${page.url}):\n${page.html}`);
process.exit(1);
