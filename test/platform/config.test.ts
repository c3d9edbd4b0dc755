/** Placer weights from the environment (src/platform/config.ts). */
import assert from "node:assert/strict";
import { placerWeightsFrom, schedulerConfigFromEnv } from "../../src/platform/config.ts";

describe("GPU_AGENT_PLACER_WEIGHTS", () => {
  it("reads every score's weight", () => {
    assert.deepEqual(placerWeightsFrom("bin_pack=0.6, reliability=0.3 ,data_locality=0.1"), { binPack: 0.6, reliability: 0.3, dataLocality: 0.1 });
    assert.deepEqual(schedulerConfigFromEnv({ GPU_AGENT_PLACER_WEIGHTS: "bin_pack=1,reliability=0,data_locality=0" }).placerWeights, {
      binPack: 1,
      reliability: 0,
      dataLocality: 0,
    });
  });

  it("reads the fragmentation weight when named, and leaves it out (off) when not", () => {
    assert.deepEqual(placerWeightsFrom("bin_pack=0.3,reliability=0.2,data_locality=0.1,gpu_fragmentation=1"), {
      binPack: 0.3,
      reliability: 0.2,
      dataLocality: 0.1,
      gpuFragmentation: 1,
    });
    assert.equal(placerWeightsFrom("bin_pack=1,reliability=0,data_locality=0")?.gpuFragmentation, undefined);
    assert.deepEqual(placerWeightsFrom("bin_pack=0,reliability=0,data_locality=0,gpu_fragmentation=2")?.gpuFragmentation, 2);
  });

  it("reads the GPU scarcity weight when named, and leaves it out (off) when not", () => {
    assert.equal(placerWeightsFrom("bin_pack=0.7,reliability=0.2,data_locality=0.1,gpu_fragmentation=1,gpu_scarcity=0.5")?.gpuScarcity, 0.5);
    assert.equal(placerWeightsFrom("bin_pack=0.7,reliability=0.2,data_locality=0.1,gpu_fragmentation=1")?.gpuScarcity, undefined);
    assert.equal(placerWeightsFrom("bin_pack=0,reliability=0,data_locality=0,gpu_scarcity=1")?.gpuScarcity, 1);
  });

  it("leaves the placer's defaults when unset or empty", () => {
    assert.equal(placerWeightsFrom(undefined), undefined);
    assert.equal(placerWeightsFrom("  "), undefined);
    assert.equal("placerWeights" in schedulerConfigFromEnv({}), false);
  });

  const refused: { raw: string; message: RegExp }[] = [
    { raw: "bin_pack=0.7,reliability=0.2", message: /missing data_locality/ },
    { raw: "bin_pack=0.7,reliability=0.2,data_locality=0.1,bin_pack=1", message: /bin_pack is given twice/ },
    { raw: "binPack=1,reliability=0,data_locality=0", message: /"binPack=1" is not one of/ },
    { raw: "bin_pack=-1,reliability=0,data_locality=0", message: /"bin_pack=-1"/ },
    { raw: "bin_pack=x,reliability=0,data_locality=0", message: /"bin_pack=x"/ },
    { raw: "bin_pack=,reliability=0,data_locality=0", message: /"bin_pack="/ },
    { raw: "bin_pack=1=2,reliability=0,data_locality=0", message: /"bin_pack=1=2"/ },
    { raw: "bin_pack=0,reliability=0,data_locality=0", message: /may not all be zero/ },
    { raw: "bin_pack=0,reliability=0,data_locality=0,gpu_fragmentation=0", message: /may not all be zero/ },
    { raw: "bin_pack=0,reliability=0,data_locality=0,gpu_scarcity=0", message: /may not all be zero/ },
  ];
  for (const c of refused) {
    it(`refuses ${JSON.stringify(c.raw)} with a message naming the problem`, () => {
      assert.throws(() => placerWeightsFrom(c.raw), c.message);
    });
  }
});
