import Check from './check.js'
import Convert from './convert.js'
import Create from './create.js'
import Inspect from './inspect.js'
import Merge from './merge.js'
import Stat from './stat.js'
import Unpack from './unpack.js'

export const commands = { check: Check, convert: Convert, create: Create, inspect: Inspect, merge: Merge, stat: Stat, unpack: Unpack }
