import assert from "node:assert/strict";
import { createBestFit, createFirstFit } from "../../bench/trace/baselines.ts";
import { parseNodes, parseTasks, taskGpuMilli, toNodeSnapshot, toUnitRequest, type TraceTask } from "../../bench/trace/openb.ts";
import { createProjectScheduler } from "../../bench/trace/project.ts";
import { allocationByLevel, arrivalOrder, replay } from "../../bench/trace/replay.ts";

// A two-node, two-GPU cluster (capacity 2000 thousandths) in the trace's CSV format.
const nodesCsv = ["sn,cpu_milli,memory_mib,gpu,model", "n0,8000,16384,1,T4", "n1,4000,8192,1,P100"].join("\n");
const tasksCsv = [
  "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time",
  "whole,2000,1024,1,1000,,LS,Running,0,1,0",
  "too-many-cores,6000,1024,1,500,,LS,Running,0,1,0",
  "cpu-only,1000,1024,0,0,,LS,Running,0,1,0",
  "p100-share,1000,1024,1,600,P100|V100M16,LS,Running,0,1,0",
].join("\n");
const capacityMilli = 2000;

describe("bench:trace: the openb replay", () => {
  it("reads nodes and tasks, and maps a task onto the placer's unit request as documented", () => {
    const nodes = parseNodes(nodesCsv);
    const tasks = parseTasks(tasksCsv);
    assert.deepEqual(nodes[1], { id: "n1", cpuMilli: 4000, memoryMib: 8192, gpus: 1, model: "P100" });
    const snapshot = toNodeSnapshot(nodes[1]!);
    assert.deepEqual(snapshot.gpus, [{ index: 0, name: "P100", vramMb: 1000, freeVramMb: 1000 }]);
    assert.equal(snapshot.cpuCores, 4);
    const share = toUnitRequest(tasks[3]!, "u3", 3);
    assert.equal(share.kind, "gpu");
    assert.equal(share.vramMb, 600);
    assert.equal(share.gpuCount, 1);
    assert.deepEqual(share.gpuModels, ["P100", "V100M16"]);
    assert.equal(share.cpuCores, 1);
    assert.equal(share.memoryMb, 1024);
    assert.equal(toUnitRequest(tasks[2]!, "u2", 2).kind, "cpu");
    const multi = toUnitRequest({ name: "m", cpuMilli: 1000, memoryMib: 1, numGpu: 4, gpuMilli: 1000, gpuSpec: [] }, "m", 0);
    assert.deepEqual([multi.gpuCount, multi.vramMb], [4, 1000]);
  });

  it("orders arrivals by seed and extends them by draws until the next would pass 130% of capacity", () => {
    const tasks = parseTasks(tasksCsv);
    const order = arrivalOrder(tasks, "42", capacityMilli);
    const demand = order.reduce((sum, t) => sum + taskGpuMilli(t), 0);
    assert.ok(demand <= 1.3 * capacityMilli);
    assert.ok(order.length > tasks.length, "the trace (2100 thousandths) is extended by draws");
    assert.deepEqual(new Set(order.slice(0, tasks.length).map((t) => t.name)), new Set(tasks.map((t) => t.name)));
    assert.deepEqual(arrivalOrder(tasks, "42", capacityMilli), order);
    assert.notDeepEqual(arrivalOrder(tasks, "43", capacityMilli), order);
  });

  it("stops a trace that asks for more than 130% at the first arrival that would pass it", () => {
    const tasks = parseTasks(tasksCsv);
    const order = arrivalOrder(tasks, "42", 1000);
    const demand = order.reduce((sum, t) => sum + taskGpuMilli(t), 0);
    assert.ok(demand <= 1300 && order.length < tasks.length);
  });

  it("averages the allocation over the arrivals whose arrived demand rounds to each level", () => {
    // First-fit, in trace order: whole → n0 (50% arrived, 50% allocated); too-many-cores fits no node
    // (75%, 50%); cpu-only → n0 (75%, 50%); p100-share → n1 (105%, 80%).
    const log = replay(parseTasks(tasksCsv), createFirstFit(parseNodes(nodesCsv)));
    assert.equal(log.placed, 3);
    assert.deepEqual(
      [...allocationByLevel(log, capacityMilli)],
      [
        [50, 50],
        [75, 50],
        [105, 80],
      ],
    );
  });

  it("places under the same hard rules with every policy: the model allow-list and the cores", () => {
    const [whole, tooManyCores, , p100Share] = parseTasks(tasksCsv) as [TraceTask, TraceTask, TraceTask, TraceTask];
    const nodes = parseNodes(nodesCsv);
    // The share needs the P100 (n1); 6 cores only n0 has; a second share would fit n0's T4 but for its model;
    // the whole GPU fits nowhere any more.
    const arrivals = [p100Share, tooManyCores, p100Share, whole];
    for (const scheduler of [createFirstFit(nodes), createBestFit(nodes, "42"), createProjectScheduler(nodes, "42")]) {
      assert.deepEqual(
        arrivals.map((t, i) => scheduler.place(t, i)),
        [true, true, false, false],
      );
    }
  });
});
