"""Distributed runs: starting the process group on CPU, the slurm environment, and what a record
says about the launch (world size, global batch, the command that starts the same launch).

mmengine's launchers pin a CUDA device per rank (`torch.cuda.set_device`), so on CPU the harness
starts the gloo process group itself, from the variables torchrun or srun set; the Runner then
finds it initialised. On CUDA mmengine's own `init_dist` does it, from the same variables.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import List, Optional

from ..errors import HarnessError

__all__ = ["init_cpu_distributed", "check_launch_env", "launch_info", "SLURM_VARS", "TORCHRUN_VARS"]

# what each launcher reads; the slurm names are those mmengine's _init_dist_slurm reads
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SLURM_VARS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST")


def check_launch_env(launcher: str) -> None:
    """The launcher's variables are set: a run started without torchrun or srun fails in one
    line here, not as a KeyError deep inside mmengine."""
    if launcher == "pytorch":
        missing = [v for v in TORCHRUN_VARS if v not in os.environ]
        if missing:
            raise HarnessError(f"--launcher pytorch needs {', '.join(missing)}, which torchrun sets; start it as "
                               f"`torchrun --nproc_per_node=N -m harness run ... --launcher pytorch`")
    elif launcher == "slurm":
        missing = [v for v in SLURM_VARS if v not in os.environ]
        if missing:
            raise HarnessError(f"--launcher slurm needs {', '.join(missing)}, which srun sets; start it as "
                               f"`srun --ntasks=N python -m harness run ... --launcher slurm` (inside sbatch or "
                               f"salloc), or use torchrun with --launcher pytorch")
        if "MASTER_ADDR" not in os.environ and shutil.which("scontrol") is None:
            raise HarnessError("--launcher slurm finds the master node with `scontrol show hostname`, which is "
                               "not on PATH; set MASTER_ADDR to the first node's address")
    elif launcher == "mpi":
        if "OMPI_COMM_WORLD_RANK" not in os.environ:
            raise HarnessError("--launcher mpi needs OMPI_COMM_WORLD_RANK, which Open MPI's mpirun sets")


def _slurm_to_torch_env() -> None:
    """The variables torch's env:// rendezvous reads, from slurm's (as mmengine's slurm path
    sets them on CUDA): the first node of the allocation is the master."""
    if "MASTER_ADDR" not in os.environ:
        node_list = os.environ["SLURM_NODELIST"]
        first = subprocess.run(["scontrol", "show", "hostname", node_list], capture_output=True, text=True)
        if first.returncode != 0 or not first.stdout.strip():
            raise HarnessError(f"`scontrol show hostname {node_list}` failed ({first.stderr.strip() or 'no output'}); "
                               f"set MASTER_ADDR")
        os.environ["MASTER_ADDR"] = first.stdout.split()[0]
    os.environ.setdefault("MASTER_PORT", "29500")  # torch.distributed's default, as mmengine uses
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")


def init_cpu_distributed(launcher: str, device: str) -> None:
    check_launch_env(launcher)
    import torch.distributed as dist
    if device != "cpu" or launcher not in ("pytorch", "slurm") or dist.is_initialized():
        return
    if launcher == "slurm":
        _slurm_to_torch_env()
    dist.init_process_group(backend="gloo")


def launch_info(launcher: str, command: List[str], batch_size: int) -> dict:
    """World size, global batch, and the argv that starts this launch again (`command` is the
    single-process argv, `python -m harness run ...`)."""
    from mmengine.dist import get_world_size
    world = get_world_size()
    info = dict(launcher=launcher, world_size=world, per_rank_batch_size=int(batch_size),
                global_batch_size=int(batch_size) * world)
    local: Optional[int] = None
    if launcher == "pytorch":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        nnodes = max(1, world // max(local, 1))
        # torchrun replaces `python`; each node adds its own --node-rank and --master-addr
        prefix = ["torchrun", f"--nnodes={nnodes}", f"--nproc_per_node={local}"]
        launch = prefix + command[1:]
    elif launcher == "slurm":
        nnodes = int(os.environ.get("SLURM_NNODES", 1))
        launch = ["srun", f"--nodes={nnodes}", f"--ntasks={world}"] + command
    else:
        nnodes, launch = 1, list(command)
    info.update(nnodes=nnodes, command=launch)
    if local is not None:
        info["nproc_per_node"] = local
    return info
