import { describe, expect, it } from 'vitest';
import { redactText, redactUrl } from './redact.ts';

describe('redactText', () => {
  it('removes the whole userinfo, even a password holding "@"', () => {
    expect(redactText('fatal: unable to access https://user:p@ss@github.com/o/r.git/')).toBe('fatal: unable to access https://github.com/o/r.git/');
    expect(redactText('clone https://user:p@ss@github.com/o/r.git', 'https://user:p%40ss@github.com/o/r.git')).toBe('clone https://github.com/o/r.git');
  });

  it('blanks the password wherever a tool quoted it back, raw or percent-decoded', () => {
    const url = 'https://x-access-token:t%2Fok@github.com/o/r.git';
    expect(redactText("password 't/ok' refused; also t%2Fok", url)).toBe("password '[redacted]' refused; also [redacted]");
  });

  it('leaves text without userinfo alone', () => {
    expect(redactText('git@github.com:o/r.git and https://github.com/o/r')).toBe('git@github.com:o/r.git and https://github.com/o/r');
  });
});

describe('redactUrl', () => {
  it('drops user and password from a URL and passes an unparsable one through redactText', () => {
    expect(redactUrl('https://u:s3cret@example.org/x.git')).toBe('https://example.org/x.git');
    expect(redactUrl('not a url https://u:p@ss@h/x')).toBe('not a url https://h/x');
  });
});
