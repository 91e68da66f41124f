// The web console in a real headless Chromium (playwright-core), run by tests/console.rs.
//
// Environment: CONSOLE_URL (the admin listener's /console/), DATA_URL, ADMIN_TOKEN,
// CLIENT_KEY (a data-plane client granted `pets`), VAULT_KEY (the secret of the vault
// connection created here), IDP_URL (the login page of the `files` connector's OAuth
// identity provider), ARTIFACTS (where screenshots go), JUNCTION_CHROMIUM.
//
// Every wait is one of playwright's, bounded; a failure takes a last screenshot and exits 1
// with the reason.

import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CONSOLE_URL = env('CONSOLE_URL');
const DATA_URL = env('DATA_URL');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const CLIENT_KEY = env('CLIENT_KEY');
const VAULT_KEY = env('VAULT_KEY');
const IDP_URL = env('IDP_URL');
const OAUTH_SECRET = 'oauth-client-secret-0d9e51';
const ARTIFACTS = env('ARTIFACTS');
const CHROMIUM = process.env.JUNCTION_CHROMIUM || '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30_000,
});
const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
const page = await context.newPage();
// Generous bounds: CI runs this beside the rest of the suite on two cores.
page.setDefaultTimeout(20_000);

// Script errors and CSP violations fail the run; failed requests the test provokes (401)
// are expected.
const problems = [];
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
    problems.push(`console error: ${message.text()}`);
  }
});

let shots = 0;
async function shot(name) {
  shots += 1;
  await page.screenshot({ path: `${ARTIFACTS}/${String(shots).padStart(2, '0')}-${name}.png`, fullPage: true });
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

let current = 'start';
function step(name) {
  current = name;
  console.log(`step: ${name}`);
}

/** The page's whole HTML, the live values of inputs included. */
async function everything() {
  return page.evaluate(() => {
    const values = [...document.querySelectorAll('input, textarea, select')].map((e) => e.value).join('\n');
    return `${document.documentElement.outerHTML}\n${values}`;
  });
}

async function nav(name) {
  await page.getByRole('navigation', { name: 'Console sections' }).getByRole('link', { name }).click();
}

try {
  step('the shell loads without the token and asks for it');
  const response = await page.goto(CONSOLE_URL);
  check(response.status() === 200, `GET /console/ answered ${response.status()}`);
  check((response.headers()['content-security-policy'] || '').startsWith("default-src 'self'"), 'no strict CSP');
  await page.locator('#sign-in').waitFor({ state: 'visible' });
  check(await page.locator('#nav').isHidden(), 'the navigation shows before signing in');
  await shot('sign-in');

  step('a wrong token is refused');
  await page.getByLabel('Admin token').fill('not-the-token');
  await page.getByLabel('Admin token').press('Enter');
  await page.locator('#sign-in-error', { hasText: 'refused' }).waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('junction.admin-token')) === null, 'a refused token was kept');
  await shot('wrong-token');

  step('signing in with the token');
  await page.getByLabel('Admin token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#nav').waitFor({ state: 'visible' });
  await page.locator('a[data-operation="pets.ListPets"]').waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('junction.admin-token')) !== null, 'the token is not kept in sessionStorage');
  check(!(await page.content()).includes(ADMIN_TOKEN), 'the token is in the page');
  await shot('signed-in');

  step('skip link is the first thing Tab reaches, and it skips');
  await page.reload();
  await page.locator('a[data-operation="pets.ListPets"]').waitFor();
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement?.classList.contains('skip-link')), 'Tab does not reach the skip link first');
  await page.keyboard.press('Enter');
  check(await page.evaluate(() => document.activeElement?.id === 'main'), 'the skip link does not move focus to the content');

  step('an operation: description and the generated form');
  await page.locator('a[data-operation="pets.ListPets"]').click();
  await page.getByRole('heading', { level: 1, name: 'List pets' }).waitFor();
  await page.getByText('Lists the pets of the shop, newest first.').waitFor();
  const labels = await page.locator('form fieldset .field label').allInnerTexts();
  check(labels[0].startsWith('Pet status'), `important parameter not first: ${labels.join(' | ')}`);
  check(await page.locator('details', { hasText: 'Advanced parameters (1)' }).count() === 1, 'no collapsed advanced group');
  check(!(await page.getByLabel('tag').isVisible()), 'the advanced parameter is not collapsed');
  check(await page.locator('[data-param="source"]').count() === 0, 'the internal parameter is shown');
  check(await page.getByLabel('Pet status').evaluate((e) => e.tagName) === 'SELECT', 'the enum is not a select');
  check(await page.locator('[data-param="limit"]').inputValue() === '2', 'the default is not filled in');
  await shot('operation');

  step('fill in the form; Tab reaches Run and Enter runs it');
  await page.getByLabel('Pet status').selectOption('sold');
  await page.locator('[data-param="limit"]').fill('3');
  await page.locator('[data-param="limit"]').focus();
  let onRun = false;
  for (let i = 0; i < 12 && !onRun; i += 1) {
    await page.keyboard.press('Tab');
    onRun = await page.evaluate(() => document.activeElement?.id === 'run');
  }
  check(onRun, 'Tab never reached the Run button');
  await page.keyboard.press('Enter');
  await page.locator('#result-status').waitFor();
  check(await page.locator('#result-status').innerText() === '200', `status ${await page.locator('#result-status').innerText()}`);
  const body = await page.locator('#result-body').innerText();
  check(body.includes('mock-pets-7731') && body.includes('"sold"'), `the mock's body is not shown: ${body.slice(0, 200)}`);
  check(body.includes('\n  "pets"'), 'the JSON body is not pretty-printed');
  check(await page.locator('.timing table').innerText().then((t) => t.includes('Upstream') && t.includes('Total')), 'no timing breakdown');
  check(await page.locator('.result table', { hasText: 'content-type' }).count() === 1, 'no response headers');
  await shot('response');

  step('required parameters are enforced');
  await page.locator('a[data-operation="pets.GetPet"]').click();
  await page.locator('[data-param="petId"]').waitFor();
  await page.getByRole('button', { name: 'Run' }).click();
  check(await page.locator('[data-param="petId"]').evaluate((e) => e.validity.valueMissing), 'an empty required field was accepted');
  check(await page.locator('#result-status').count() === 0, 'the call ran without its required parameter');
  await page.locator('[data-param="petId"]').fill('42');
  await page.locator('[data-param="petId"]').press('Enter');
  await page.locator('#result-status', { hasText: '200' }).waitFor();
  check((await page.locator('#result-body').innerText()).includes('mock-pet-one'), 'GetPet body missing');
  await shot('required');

  step('a SOAP operation: its JSON body from the schema derived from the WSDL');
  await page.locator('a[data-operation="payroll.GetPayslips"]').click();
  await page.getByRole('heading', { level: 1, name: 'The latest payslips of one employee, newest first.' }).waitFor();
  const area = page.locator('[data-body="json"]');
  await area.waitFor();
  check((await area.inputValue()).includes('"employeeId"'), `the body skeleton lacks employeeId: ${await area.inputValue()}`);
  await area.fill('{"employeeId": "e2", "months": 2}');
  await page.getByRole('button', { name: 'Run' }).click();
  await page.locator('#result-status', { hasText: '200' }).waitFor();
  const slips = await page.locator('#result-body').innerText();
  check(slips.includes('"payslip"') && slips.includes('"currency": "EUR"'), `the SOAP answer is not shown as JSON: ${slips.slice(0, 200)}`);
  await shot('soap');

  step('views: the dependency graph');
  await nav('Views');
  const graph = page.locator('section[data-view="home"] svg.graph');
  await graph.waitFor();
  check(await graph.locator('g.node').count() === 3, 'the graph does not have 3 nodes');
  check(await graph.locator('path.edge').count() === 1, 'the graph does not have 1 edge');
  check(await graph.locator('path.edge[data-from="profile"][data-to="detail"]').count() === 1, 'the edge is not profile → detail');
  await shot('views');

  step('diagnostics are listed');
  await nav('Diagnostics');
  await page.locator('#diagnostics tbody tr').first().waitFor();
  check(await page.locator('#diagnostics tbody tr').count() >= 1, 'no diagnostics');
  check((await page.locator('#diagnostics').innerText()).includes('warning'), 'no warning listed');
  await shot('diagnostics');

  step('triggers: their state and latest events');
  await nav('Triggers');
  const trigger = page.locator('[data-trigger="new-pets"]');
  await trigger.locator('table.events tbody tr').first().waitFor();
  const shown = await trigger.innerText();
  check(shown.includes('mock-pets-7731'), `the trigger's event is not shown: ${shown.slice(0, 300)}`);
  check(shown.includes('pets · OnNewPets') && shown.includes('running'), `the trigger's state is not shown: ${shown.slice(0, 300)}`);
  await shot('triggers');

  step('create a connection; its secret never shows');
  await nav('Connections');
  await page.getByRole('heading', { name: 'New connection' }).waitFor();
  await page.getByLabel('Connector').selectOption('vault');
  const secret = page.locator('[data-value="api_key"]');
  await secret.waitFor();
  check(await secret.getAttribute('type') === 'password', 'the secret is not a password field');
  await page.getByLabel('Name').fill('browser');
  await secret.fill(VAULT_KEY);
  await page.locator('[data-value="region"]').selectOption('eu');
  await page.getByRole('button', { name: 'Create connection' }).click();
  await page.locator('#connections tr', { hasText: 'browser' }).waitFor();
  await page.locator('.notice', { hasText: 'created' }).waitFor();
  check(!(await everything()).includes(VAULT_KEY), 'the secret is in the page after creating the connection');
  await shot('connection-created');

  step('test the connection');
  await page.locator('#connections tr', { hasText: 'browser' }).getByRole('button', { name: 'Test' }).click();
  await page.locator('.notice', { hasText: 'works' }).waitFor();
  await shot('connection-tested');

  step('an OAuth connection: create it, then log in at the identity provider');
  await page.getByLabel('Connector').selectOption('files');
  const clientSecret = page.locator('[data-value="token:clientSecret"]');
  await clientSecret.waitFor();
  check(await clientSecret.getAttribute('type') === 'password', 'the OAuth client secret is not a password field');
  await page.getByLabel('Name').fill('files-login');
  await clientSecret.fill(OAUTH_SECRET);
  await page.getByRole('button', { name: 'Create connection' }).click();
  const filesRow = page.locator('#connections tr', { hasText: 'files-login' });
  await filesRow.waitFor();
  const popup = context.waitForEvent('page', { timeout: 20_000 });
  await filesRow.getByRole('button', { name: 'Log in' }).click();
  const login = await popup;
  await login.waitForLoadState();
  const opened = new URL(login.url());
  check(login.url().startsWith(`${IDP_URL}?`), `the login opened ${login.url()}`);
  check(opened.searchParams.get('state') && opened.searchParams.get('code_challenge_method') === 'S256', `not a PKCE login: ${login.url()}`);
  check(await login.title() === 'Mock identity provider', 'the identity provider page did not load');
  await login.close();
  const link = page.getByRole('link', { name: 'open the login page' });
  await link.waitFor();
  check((await link.getAttribute('href')).startsWith(IDP_URL), 'the login link is not the API\'s URL');
  const html = await everything();
  check(!html.includes(OAUTH_SECRET) && !html.includes(VAULT_KEY), 'a secret is in the page');
  await shot('oauth-login');
  check(await page.locator('#connections tr', { hasText: 'browser' }).getByRole('button', { name: 'Log in' }).count() === 0,
    'an API-key connection offers an OAuth login');

  step('delete a connection (after confirming)');
  page.once('dialog', (dialog) => dialog.accept());
  await filesRow.getByRole('button', { name: 'Delete' }).click();
  await page.locator('.notice', { hasText: 'files-login deleted' }).waitFor();
  check(await page.locator('#connections tr', { hasText: 'files-login' }).count() === 0, 'the deleted connection is still listed');

  step('use the connection');
  await page.goto(`${CONSOLE_URL}#/connectors/vault/GetSecret`);
  await page.getByLabel('Connection').waitFor();
  const option = await page.getByLabel('Connection').locator('option', { hasText: 'browser' }).getAttribute('value');
  await page.getByLabel('Connection').selectOption(option);
  await page.getByRole('button', { name: 'Run' }).click();
  await page.locator('#result-status').waitFor();
  check(await page.locator('#result-status').innerText() === '200', `with the connection: ${await page.locator('#result-status').innerText()}`);
  const vault = await page.locator('#result-body').innerText();
  check(vault.includes('mock-vault-ok') && vault.includes('[redacted]'), `vault body: ${vault}`);
  check(!(await everything()).includes(VAULT_KEY), 'the secret is in the page after using the connection');
  await shot('connection-used');

  step('a chart changes after traffic');
  await nav('Statistics');
  await page.locator('#stats-updated', { hasText: 'Updated' }).waitFor({ timeout: 30_000 });
  const card = page.locator('section[data-route="pets.ListPets"]');
  const before = (await card.count()) ? Number(await card.getAttribute('data-requests')) : 0;
  for (let i = 0; i < 5; i += 1) {
    const answer = await fetch(`${DATA_URL}/connectors/pets/pets?limit=1`, { headers: { 'X-Api-Key': CLIENT_KEY } });
    check(answer.status === 200, `data plane answered ${answer.status}`);
    await answer.arrayBuffer();
  }
  await page.waitForFunction((n) => {
    const chart = document.querySelector('section[data-route="pets.ListPets"] svg.chart.requests');
    return chart && Number(chart.dataset.requests) >= n;
  }, before + 5, { timeout: 30_000 });
  check(await card.locator('svg.chart.requests rect.bar').count() >= 1, 'the requests chart has no bar');
  check(await card.locator('svg.chart.latency path.line').count() >= 1, 'the latency chart has no line');
  await shot('charts');

  step('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#sign-in').waitFor({ state: 'visible' });
  check(await page.evaluate(() => sessionStorage.getItem('junction.admin-token')) === null, 'the token stays after signing out');

  check(problems.length === 0, `the page reported problems:\n${problems.join('\n')}`);
  console.log(`console: all steps passed (${shots} screenshots in ${ARTIFACTS})`);
  await browser.close();
} catch (error) {
  console.error(`console: step "${current}" failed: ${error.message}`);
  if (problems.length) console.error(problems.join('\n'));
  try {
    await page.screenshot({ path: `${ARTIFACTS}/failure.png`, fullPage: true });
  } catch {
    // The page may be gone.
  }
  await browser.close();
  process.exit(1);
}
