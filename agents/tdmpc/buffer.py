"""Prioritized replay of horizon-long slices of episodes, stored as flat tensors on one device."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Sub-trajectories for one update; time is the leading axis."""

    obs: torch.Tensor
    """[B, obs] first observation of each slice."""
    next_obs: torch.Tensor
    """[H, B, obs] observation after each action."""
    action: torch.Tensor
    """[H, B, act] actions taken."""
    reward: torch.Tensor
    """[H, B, 1] rewards received."""
    done: torch.Tensor
    """[H, B, 1] 1 where the step ended the episode by termination (no value after it), else 0."""
    alive: torch.Tensor
    """[H + 1, B, 1] 1 while no earlier step of the slice terminated (alive[0] = 1): the losses of step t
    and the policy term at latent t count only where alive[t] = 1."""
    idxs: torch.Tensor
    """[B] buffer index of each slice (for priority updates)."""
    weights: torch.Tensor
    """[B] importance-sampling weights, max 1."""


class ReplayBuffer:
    """Episodes laid end to end; a slice may start where `horizon` steps remain in its episode, or anywhere
    in an episode that ended by termination (the steps after the terminal one are masked out by `alive`).

    New steps get the current maximum priority; slices are drawn with probability
    priority ** alpha (with replacement) and weighted by (N * p) ** -beta / max.
    When full, writing restarts at index 0 and overwrites the oldest episodes.
    """

    _EPS = 1e-6

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, horizon: int,
                 per_alpha: float = 0.6, per_beta: float = 0.4, device: str | torch.device = "cpu") -> None:
        self.capacity, self.horizon = capacity, horizon
        self.per_alpha, self.per_beta = per_alpha, per_beta
        self.device = torch.device(device)
        """Where the episodes are stored and slices are sampled."""
        rows = capacity + horizon  # a slice of a terminated episode may run past the last stored step
        self.obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.next_obs = torch.zeros(rows, obs_dim, device=self.device)
        self.action = torch.zeros(rows, act_dim, device=self.device)
        self.reward = torch.zeros(rows, device=self.device)
        self.done = torch.zeros(rows, device=self.device)
        self.priority = torch.zeros(capacity, device=self.device)
        self.idx = 0
        """Next write position."""
        self.size = 0
        """Number of filled positions."""
        self._steps = torch.arange(horizon, device=self.device).unsqueeze(1)

    def __repr__(self) -> str:
        return (f"ReplayBuffer(size={self.size}/{self.capacity}, obs={self.obs.shape[1]}, "
                f"act={self.action.shape[1]}, horizon={self.horizon})")

    def __len__(self) -> int:
        return self.size

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, terminated: bool = False) -> None:
        """Store one episode: obs [L+1, obs], action [L, act], reward [L] (on any device); `terminated`: it
        ended in a terminal state (gymnasium's `terminated`), not by a time limit."""
        obs, action, reward = (x.to(self.device) for x in (obs, action, reward))
        n = action.shape[0]
        if n > self.capacity:
            raise ValueError(f"episode of {n} steps does not fit a buffer of {self.capacity}")
        if self.idx + n > self.capacity:
            self.priority[self.idx:] = 0
            self.idx = 0
        top = float(self.priority[: self.size].max()) if self.size else 1.0
        sl = slice(self.idx, self.idx + n)
        self.obs[sl], self.next_obs[sl] = obs[:-1], obs[1:]
        self.action[sl], self.reward[sl] = action, reward
        self.done[sl] = 0
        self.done[self.idx + n - 1] = float(terminated)
        self.priority[sl] = max(top, self._EPS)
        if not terminated:
            self.priority[self.idx + max(n - self.horizon + 1, 0): self.idx + n] = 0
        self.idx += n
        self.size = max(self.size, self.idx)

    def sample(self, batch_size: int) -> Batch:
        """Draw `batch_size` slices of `horizon` steps."""
        probs = self.priority[: self.size].pow(self.per_alpha)
        probs /= probs.sum()
        idxs = torch.multinomial(probs, batch_size, replacement=True)
        weights = (self.size * probs[idxs]).pow(-self.per_beta)
        weights /= weights.max()
        steps = idxs.unsqueeze(0) + self._steps
        done = self.done[steps].unsqueeze(-1)
        alive = torch.cat([torch.ones_like(done[:1]), torch.cumprod(1 - done, dim=0)])
        return Batch(self.obs[idxs], self.next_obs[steps], self.action[steps],
                     self.reward[steps].unsqueeze(-1), done, alive, idxs, weights)

    def update_priorities(self, idxs: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set new priorities (e.g. TD errors) of sampled slices."""
        self.priority[idxs] = priorities.flatten() + self._EPS

    def state_dict(self) -> dict:
        """Filled part of the buffer as CPU tensors plus positions."""
        n = self.size
        filled = {name: getattr(self, name)[:n].to("cpu", copy=True)
                  for name in ("obs", "next_obs", "action", "reward", "done", "priority")}
        return {**filled, "idx": self.idx, "size": n}

    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict`; the capacity may be larger than when saved. States saved before
        terminal flags were stored hold only non-terminating episodes (flags 0)."""
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"saved buffer holds {n} steps, more than this buffer's capacity {self.capacity}")
        for name in ("obs", "next_obs", "action", "reward", "priority"):
            getattr(self, name)[:n] = state[name]
        self.done[:n] = state["done"] if "done" in state else 0
        self.idx, self.size = int(state["idx"]), n
