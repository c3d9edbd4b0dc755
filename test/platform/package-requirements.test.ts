/**
 * What a package may put in requirements.txt (src/platform/package-requirements.ts): distributions by
 * name, never a source. The node owner chooses where packages come from.
 */
import assert from "node:assert/strict";
import { pythonVersionProblem, requirementsProblem } from "../../src/platform/package-requirements.ts";

const hex = "0123456789abcdef".repeat(4);

describe("requirements.txt rules", () => {
  const accepted: { name: string; text: string }[] = [
    { name: "an empty file", text: "" },
    { name: "comments and blank lines", text: "# pinned for the sweep\n\n   \n# end\n" },
    { name: "a bare name", text: "numpy\n" },
    { name: "names with dots, dashes and underscores", text: "zope.interface\nscikit-learn\ntyping_extensions\n" },
    { name: "version specifiers", text: "torch>=2.3,<3\nnumpy==2.1.*\nscipy~=1.13\npandas!=2.0.0\nattrs===23.1.0\n" },
    { name: "specifiers in parentheses", text: "requests (>=2.31)\n" },
    { name: "extras", text: "requests[socks,security]>=2\nuvicorn[standard]\n" },
    { name: "environment markers", text: "pywin32>=306 ; sys_platform == 'win32'\ntomli; python_version < \"3.11\" and platform_machine != 'x86-64'\n" },
    { name: "a comment after a requirement", text: "numpy==2.1.0  # the last with wheels for 3.10\n" },
    { name: "hashes, inline and on continuation lines", text: `numpy==2.1.0 --hash=sha256:${hex}\ntorch==2.3.1 \\\n    --hash=sha256:${hex} \\\n    --hash sha512:${hex}\n` },
    { name: "Windows line endings", text: "numpy==2.1.0\r\ntorch\r\n" },
  ];
  for (const tc of accepted) {
    it(`accepts ${tc.name}`, () => {
      assert.equal(requirementsProblem(tc.text), undefined);
    });
  }

  const refused: { name: string; text: string; message: RegExp }[] = [
    { name: "an https URL", text: "https://example.com/pkgs/evil-1.0.tar.gz\n", message: /^requirements.txt line 1: "https:\/\/example.com\/pkgs\/evil-1.0.tar.gz" names a URL/ },
    { name: "a direct reference (name @ url)", text: "numpy\nevil @ https://example.com/evil.whl\n", message: /^requirements.txt line 2: "evil @ https:\/\/example.com\/evil.whl" names a URL/ },
    { name: "a direct reference without spaces", text: "evil@file:///tmp/evil\n", message: /line 1: .* names a URL/ },
    { name: "a git checkout", text: "git+https://github.com/evil/evil.git@main#egg=evil\n", message: /line 1: .* names a version-control repository/ },
    { name: "a Mercurial checkout", text: "hg+https://example.com/repo\n", message: /names a version-control repository/ },
    { name: "a relative path", text: "./vendor/lib\n", message: /line 1: "\.\/vendor\/lib" names a local path/ },
    { name: "the current directory", text: ".\n", message: /names a local path/ },
    { name: "an absolute path", text: "/opt/wheels/lib\n", message: /names a local path/ },
    { name: "a home path", text: "~/lib\n", message: /names a local path/ },
    { name: "a file: URL", text: "file:vendor/lib\n", message: /names a local path/ },
    { name: "a wheel file", text: "evil-1.0-py3-none-any.whl\n", message: /names an archive file/ },
    { name: "an editable install", text: "-e .\n", message: /line 1: "-e \." is an editable install \(-e\)/ },
    { name: "an editable install by its long name", text: "--editable=git+https://x/y\n", message: /is an editable install \(--editable\)/ },
    { name: "an include of another file", text: "-r base.txt\n", message: /includes another file \(-r\)/ },
    { name: "a constraints file", text: "--constraint c.txt\n", message: /includes another file \(--constraint\)/ },
    { name: "an index URL", text: "--index-url https://evil.example.com/simple\n", message: /chooses where packages come from \(--index-url\)/ },
    { name: "a short index URL", text: "-i https://evil.example.com/simple\n", message: /chooses where packages come from \(-i\)/ },
    { name: "an extra index URL", text: "numpy\n--extra-index-url=https://evil.example.com/simple\n", message: /line 2: .* chooses where packages come from \(--extra-index-url\)/ },
    { name: "find-links", text: "--find-links /mnt/wheels\n", message: /chooses where packages come from \(--find-links\)/ },
    { name: "a trusted host", text: "--trusted-host evil.example.com\n", message: /chooses where packages come from \(--trusted-host\)/ },
    { name: "another pip option", text: "--pre\n", message: /uses the pip option --pre, which a package may not set/ },
    { name: "a per-requirement option other than --hash", text: "numpy --config-settings=x=y\n", message: /uses the pip option --config-settings/ },
    { name: "a hash of an algorithm pip does not check", text: "numpy==2 --hash=md5:abc\n", message: /has a --hash that is not sha256, sha384 or sha512/ },
    { name: "an environment variable", text: "numpy==${NUMPY_VERSION}\n", message: /refers to an environment variable/ },
    { name: "a URL hidden in a continuation", text: "numpy==2.1.0\ntorch \\\n @ https://evil.example.com/torch.whl\n", message: /^requirements.txt line 2: "torch  @ https:\/\/evil.example.com\/torch.whl" names a URL/ },
    { name: "something that is not a requirement", text: "numpy = 2\n", message: /is not a requirement of the form name\[extras\] specifiers ; markers/ },
    { name: "a marker with characters a marker does not use", text: "numpy ; python_version > `id`\n", message: /has an environment marker with characters a marker does not use/ },
    { name: "a control character", text: "numpy\u001b[2J\n", message: /has a control character/ },
  ];
  for (const tc of refused) {
    it(`refuses ${tc.name}, naming the line`, () => {
      assert.match(requirementsProblem(tc.text) ?? "(accepted)", tc.message);
    });
  }

  it("shortens a long line it quotes", () => {
    const problem = requirementsProblem(`https://example.com/${"a".repeat(200)}\n`) ?? "";
    assert.match(problem, /^requirements.txt line 1: "https:\/\/example.com\/a{60}…" names a URL/);
  });
});

describe("the manifest's python version", () => {
  const cases: { value: unknown; ok: boolean }[] = [
    { value: "3.8", ok: true },
    { value: "3.11", ok: true },
    { value: "3.13", ok: true },
    { value: "3", ok: false },
    { value: "3.11.4", ok: false },
    { value: "2.7", ok: false },
    { value: "3.011", ok: false },
    { value: ">=3.10", ok: false },
    { value: "", ok: false },
    { value: 3.11, ok: false },
    { value: null, ok: false },
  ];
  for (const tc of cases) {
    it(`${tc.ok ? "accepts" : "refuses"} ${JSON.stringify(tc.value)}`, () => {
      assert.equal(pythonVersionProblem(tc.value), tc.ok ? undefined : '"python" must be a Python 3 version as major.minor, like "3.11"');
    });
  }
});
