-- Argo CD health check for litellm.dev Organization and OrganizationMember.
-- One script serves both kinds: they share the same kstatus-style status
-- (observedGeneration plus Ready, Reconciling and Stalled conditions).
-- Argo CD runs it in gopher-lua (Lua 5.1) with the live object in `obj`.
local hs = {}

-- The condition of the given type, or nil when the operator has not set it.
local function condition(conditions, wanted)
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

-- A message for Argo CD's UI: the condition's own message, else its reason,
-- else the fallback text.
local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local status = obj.status or {}
local generation = (obj.metadata or {}).generation
local observed = status.observedGeneration
local conditions = status.conditions or {}

-- Paused=True (the litellm.dev/paused annotation): the operator writes nothing
-- until it is lifted, so whatever else the status says is as of the pause.
-- Earlier releases said so with Reconciling=False, reason Paused, alone.
local paused = condition(conditions, "Paused")
local reconciling = condition(conditions, "Reconciling")
if (paused ~= nil and paused.status == "True")
    or (reconciling ~= nil and reconciling.status == "False" and reconciling.reason == "Paused") then
  hs.status = "Suspended"
  hs.message = describe(paused or reconciling, "Paused")
  return hs
end

-- A status that has not caught up with the spec says nothing about the spec:
-- missing, the schema default -1, or older than metadata.generation.
if observed == nil or observed == -1 or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the latest generation"
  return hs
end

-- Stalled=True: the operator gave up until the spec changes (invalid spec,
-- conflict); it takes precedence over every other condition.
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- Ready=True: the database rows match the spec.
local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

-- Reconciling=True: the operator is still working on it, or retrying.
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

-- Anything else (no conditions yet, Ready=False without Stalled): not settled.
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
